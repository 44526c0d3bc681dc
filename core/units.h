/* core/units.h - quantities as people read them in logs and reports. */
#ifndef DS_CORE_UNITS_H
#define DS_CORE_UNITS_H

#include <stddef.h>

/* ds_bytes_str() : "1.23 GiB" into buf. @return buf. */
const char *ds_bytes_str(double bytes, char *buf, size_t n);
/* ds_duration_str() : "1:02:03" (or "2:03" under an hour) into buf. @return buf. */
const char *ds_duration_str(double seconds, char *buf, size_t n);

#endif
