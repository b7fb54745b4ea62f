#ifndef HVB_DRIVERS_H
#define HVB_DRIVERS_H
#include "io.h"
/* interrupt_driven: the driver's interrupt-driven variant (the -irq benchmarks), else polling. */
const char *e1000_init(const struct nic_ops **out, int interrupt_driven);
const char *virtio_net_init(const struct nic_ops **out, int interrupt_driven);
const char *ide_init(const struct disk_ops **out, int interrupt_driven);
const char *virtio_blk_init(const struct disk_ops **out, int interrupt_driven);
const char *virtio_balloon_init(const struct balloon_ops **out, int interrupt_driven);
#endif
