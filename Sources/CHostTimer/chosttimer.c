/* Header-only module; this file gives SwiftPM a translation unit. */
#include "chosttimer.h"
