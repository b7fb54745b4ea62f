/* The PVH boot ABI's start-of-day structure (Xen's arch-x86/hvm/start_info.h, version 1). */
#ifndef START_INFO_H
#define START_INFO_H
#include <stdint.h>

#define HVM_START_MAGIC 0x336ec578u

struct hvm_start_info {
    uint32_t magic;
    uint32_t version;
    uint32_t flags;
    uint32_t module_count;
    uint64_t module_list_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr;   /* version >= 1 */
    uint32_t memmap_entries; /* version >= 1 */
    uint32_t reserved;
};

struct hvm_memmap_entry {
    uint64_t address;
    uint64_t size;
    uint32_t type; /* 1 = RAM */
    uint32_t reserved;
};
#endif
