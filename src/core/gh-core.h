/* gh-core.h: umbrella header of libghcore. */
#ifndef GH_CORE_H
#define GH_CORE_H

#define GH_VERSION "0.1.0"

#include "archive.h"
#include "audit.h"
#include "auth.h"
#include "bus.h"
#include "clock.h"
#include "config.h"
#include "csv.h"
#include "e164.h"
#include "err.h"
#include "hist.h"
#include "http.h"
#include "idem.h"
#include "json.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "outbox.h"
#include "router.h"
#include "scheduler.h"
#include "service.h"
#include "sign.h"
#include "store.h"
#include "uuid.h"

#endif
