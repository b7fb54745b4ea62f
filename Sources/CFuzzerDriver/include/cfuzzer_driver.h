#ifndef CFUZZER_DRIVER_H
#define CFUZZER_DRIVER_H
#include <stddef.h>
#include <stdint.h>

/* libFuzzer's driver (compiler-rt, LLVM 11 and later). Linked only when the fuzz driver is built
 * with -sanitize=fuzzer; the normal build never references it. */
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*test_one_input)(const uint8_t *data, size_t size));

#endif
