// portico: the one header that includes the Windows SDK.
//
// Everything Windows-specific in portico includes this file and nothing else
// from the SDK. It defines WIN32_LEAN_AND_MEAN and NOMINMAX only while it
// includes the SDK, and only if the user did not define them; it never defines
// _WIN32_WINNT (the user's choice of target version stays the user's).
#pragma once

#include <portico/config.hpp>

#if !PORTICO_BACKEND_IOCP
#error "portico/detail/win/windows.hpp is only for Windows builds"
#endif

#if defined(_WINSOCKAPI_) && !defined(_WINSOCK2API_)
#error                                                                                                                 \
    "portico: <winsock.h> was included before portico. Include <winsock2.h> (or portico) before <windows.h>, or define WIN32_LEAN_AND_MEAN."
#endif

#if !defined(WIN32_LEAN_AND_MEAN)
#define WIN32_LEAN_AND_MEAN
#define PORTICO_DEFINED_WIN32_LEAN_AND_MEAN
#endif
#if !defined(NOMINMAX)
#define NOMINMAX
#define PORTICO_DEFINED_NOMINMAX
#endif

// Order matters: winsock2.h must precede windows.h.
#include <winsock2.h>
#include <ws2tcpip.h>
#include <mswsock.h>
#include <mstcpip.h>
#include <windows.h>

// portico's minimum is Windows 10 / Windows Server 2016 (docs/design/layout.md
// says why). The SDK has set _WIN32_WINNT by now, to the user's value or its
// own default; portico never sets it.
#if defined(_WIN32_WINNT) && _WIN32_WINNT < 0x0A00
#error                                                                                                                 \
    "portico needs Windows 10 or Windows Server 2016 or later, but _WIN32_WINNT is below 0x0A00 (_WIN32_WINNT_WIN10)."
#endif

#if defined(PORTICO_DEFINED_WIN32_LEAN_AND_MEAN)
#undef WIN32_LEAN_AND_MEAN
#undef PORTICO_DEFINED_WIN32_LEAN_AND_MEAN
#endif
#if defined(PORTICO_DEFINED_NOMINMAX)
#undef NOMINMAX
#undef PORTICO_DEFINED_NOMINMAX
#endif
