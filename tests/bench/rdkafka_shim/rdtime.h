/* rdtime.h - see rd.h: everything the example needs is there. */
#include "rd.h"
