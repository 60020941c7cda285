/* gh-core.h: umbrella header of libghcore. */
#ifndef GH_CORE_H
#define GH_CORE_H

#define GH_VERSION "0.1.0"

#include "clock.h"
#include "err.h"
#include "log.h"
#include "uuid.h"

#endif
