#ifndef HVB_DRIVERS_H
#define HVB_DRIVERS_H
#include "io.h"
const char *e1000_init(const struct nic_ops **out);
const char *virtio_net_init(const struct nic_ops **out);
const char *ide_init(const struct disk_ops **out);
const char *virtio_blk_init(const struct disk_ops **out);
#endif
