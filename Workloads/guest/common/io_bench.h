#ifndef HVB_IO_BENCH_H
#define HVB_IO_BENCH_H
#include "hvb.h"
const char *io_prepare(const struct hvb_job *job, int needs_nic, int needs_disk);
const char *net_transmit(uint64_t count, uint32_t length);
const char *net_receive(uint64_t count, uint64_t *bytes);
const char *net_request_response(uint64_t count);
const char *net_serve(uint64_t mode);
const char *disk_operations(uint64_t count, int write, int random, uint32_t sectors, uint64_t *bytes);
#endif
