/* Declarations only: see include/cfuzzer_driver.h. */
#include "cfuzzer_driver.h"
