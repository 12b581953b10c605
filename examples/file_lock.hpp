// What the file examples ask of Windows' sharing modes, on Linux: there an
// open never refuses another, so the programs that must not meet on one file
// take flock() locks on it instead. A shared lock stands for an open that
// shares reading (a download, a file being uploaded from), an exclusive one
// for an open that shares nothing (an upload's claim). flock() is advisory:
// it keeps file_server's uploads, its downloads and file_client apart, as
// the sharing modes do on Windows, but not a program that takes no lock.
#pragma once

#include <portico/portico.hpp>

#if !defined(_WIN32)
#include <sys/file.h>

#include <cerrno>
#endif

namespace file_lock {

/// The kind of lock: readers together, or one holder alone.
enum class kind { shared, exclusive };

/// What hold() found.
enum class outcome {
    held,  ///< the lock is ours until the file is closed
    busy,  ///< another open of the file holds a lock that conflicts
    failed ///< the system could not lock the file (errno says why)
};

/// On Linux, locks `file` (open) with `k`, without waiting, until it is
/// closed. On Windows, `held`: the sharing mode of the open already did it.
/// Thread safety: as the file's other synchronous members.
inline outcome hold([[maybe_unused]] const portico::random_access_file& file, [[maybe_unused]] kind k) noexcept
{
#if defined(_WIN32)
    return outcome::held;
#else
    const int fd = static_cast<int>(file.native_handle());
    if (::flock(fd, (k == kind::shared ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0) return outcome::held;
    return errno == EWOULDBLOCK ? outcome::busy : outcome::failed;
#endif
}

} // namespace file_lock
