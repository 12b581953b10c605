// How file_server stores one upload: which names the upload owns, where its
// bytes go, how they are checked, and when NAME is replaced.
//
// Two uploads must never write one file, and only the file system knows
// which names are one file: on Windows "Ärger.bin" and "ärger.bin" are the
// same file (NTFS ignores case in every alphabet, by its own table), and a
// server that folds case itself gets some alphabet wrong. So an upload
// claims its names by opening them with no sharing, and the file system
// refuses the second claim on the same file, however its name is spelled:
//
//   NAME.part  created with no sharing (a stale one, left by a crash and
//              open in no program, is taken over): the content goes here,
//              and while one upload holds it, an upload of any name that is
//              the same file is refused as busy;
//   NAME       if it exists, opened with no sharing too: refused as busy if
//              another program has it open, and nobody can open it while the
//              upload runs, so replacing it at the end does not fail.
//
// At the end NAME.part is read back, and its size and CRC-32 are what the
// server compares with the client's: it judges what was stored, not what
// was received. Only then is NAME.part renamed to NAME through its own
// handle, replacing NAME in one step. However the upload ends otherwise,
// NAME.part is deleted through its handle, never by name.
//
// The calls block the pool thread that makes them, which is fine on a local
// disk. When the example moves to overlapped file I/O, the handles gain
// FILE_FLAG_OVERLAPPED; who owns which name stays as it is.
#pragma once

// The Windows SDK, included the way portico includes it.
#include <portico/detail/win/windows.hpp>

#include "file_protocol.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace file_store {

/// Why a file operation failed; no message: it did not.
struct failure {
    std::string message;
    /// The file system said another holder has the file: the upload is
    /// refused as busy rather than failed.
    bool busy = false;

    explicit operator bool() const noexcept { return !message.empty(); }
};

/// A file as read back from the disk.
struct stored_content {
    failure error;
    std::uint64_t size = 0;
    std::uint32_t crc = 0;
};

/// One upload's claim on NAME and NAME.part, and NAME.part's content.
/// Thread safety: one thread at a time.
class incoming_file {
public:
    /// For the file `target`; nothing is opened before claim().
    explicit incoming_file(std::filesystem::path target) : target_(std::move(target)) {}
    incoming_file(const incoming_file&) = delete;
    incoming_file& operator=(const incoming_file&) = delete;
    ~incoming_file() { discard(); }

    // snippet-begin: claim
    /// Creates NAME.part and holds NAME, both with no sharing (see above).
    /// Fails with `busy` if the file system says another upload or program
    /// holds either.
    failure claim()
    {
        std::filesystem::path part = target_;
        part += ".part";
        part_ = ::CreateFileW(part.c_str(), GENERIC_READ | GENERIC_WRITE | DELETE, 0, nullptr, CREATE_ALWAYS,
                              FILE_ATTRIBUTE_NORMAL, nullptr);
        if (part_ == INVALID_HANDLE_VALUE) {
            const DWORD error = ::GetLastError();
            if (error == ERROR_SHARING_VIOLATION) return {"an upload of that file is in progress", true};
            return {"cannot create the file: " + message(error)};
        }
        // Read access, because a handle with no data access does not take
        // part in sharing: it would lock nobody out.
        final_ =
            ::CreateFileW(target_.c_str(), GENERIC_READ, 0, nullptr, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
        if (final_ == INVALID_HANDLE_VALUE) {
            const DWORD error = ::GetLastError();
            if (error == ERROR_SHARING_VIOLATION) return {"the file is in use on the server", true};
            if (error != ERROR_FILE_NOT_FOUND) return {"cannot open the file: " + message(error)};
        }
        return {};
    }
    // snippet-end: claim

    /// Appends `bytes` to NAME.part.
    failure write(std::span<const std::byte> bytes)
    {
        while (!bytes.empty()) {
            const auto chunk = static_cast<DWORD>(std::min<std::size_t>(bytes.size(), 1u << 30));
            DWORD written = 0;
            if (!::WriteFile(part_, bytes.data(), chunk, &written, nullptr)) {
                return {"cannot write the file: " + message(::GetLastError())};
            }
            if (written == 0) return {"cannot write the file: nothing was written"};
            bytes = bytes.subspan(written);
        }
        return {};
    }

    /// Reads NAME.part from its start: its size and CRC-32 as stored.
    stored_content read_back()
    {
        stored_content stored;
        if (!::SetFilePointerEx(part_, LARGE_INTEGER{}, nullptr, FILE_BEGIN)) {
            stored.error = {"cannot read the file back: " + message(::GetLastError())};
            return stored;
        }
        std::vector<std::byte> buffer(64 * 1024);
        file_proto::crc32 crc;
        for (;;) {
            DWORD n = 0;
            if (!::ReadFile(part_, buffer.data(), static_cast<DWORD>(buffer.size()), &n, nullptr)) {
                stored.error = {"cannot read the file back: " + message(::GetLastError())};
                return stored;
            }
            if (n == 0) break;
            crc.update(std::span<const std::byte>(buffer.data(), n));
            stored.size += n;
        }
        stored.crc = crc.value();
        return stored;
    }

    /// Renames NAME.part to NAME through NAME.part's handle, replacing NAME
    /// in one step.
    failure commit()
    {
        // RACE: NAME cannot be replaced while we hold it, so it is released
        // first. Another program may open it in between: the rename then
        // fails, the upload fails, and NAME stays as it was.
        close(final_);
        // The rename wants a full path (std::filesystem::absolute would do,
        // but Wine's msvcp140 lacks what the Microsoft STL calls for it).
        std::wstring to(MAX_PATH, L'\0');
        for (;;) {
            const DWORD n = ::GetFullPathNameW(target_.c_str(), static_cast<DWORD>(to.size()), to.data(), nullptr);
            if (n == 0) return {"cannot replace the file: " + message(::GetLastError())};
            const bool fits = n < to.size();
            to.resize(n);
            if (fits) break;
        }
        // FILE_RENAME_INFO ends in the name; a vector of it keeps its alignment.
        std::vector<FILE_RENAME_INFO> info(2 + to.size() * sizeof(wchar_t) / sizeof(FILE_RENAME_INFO));
        info[0].ReplaceIfExists = TRUE;
        info[0].RootDirectory = nullptr;
        info[0].FileNameLength = static_cast<DWORD>(to.size() * sizeof(wchar_t));
        std::memcpy(info[0].FileName, to.c_str(), (to.size() + 1) * sizeof(wchar_t));
        if (!::SetFileInformationByHandle(part_, FileRenameInfo, info.data(),
                                          static_cast<DWORD>(info.size() * sizeof(FILE_RENAME_INFO)))) {
            return {"cannot replace the file: " + message(::GetLastError())};
        }
        committed_ = true;
        close(part_);
        return {};
    }

    /// Unless commit() succeeded, deletes NAME.part; releases both names,
    /// so that the client may retry at once. Idempotent.
    void discard() noexcept
    {
        if (part_ != INVALID_HANDLE_VALUE && !committed_) {
            // NOTE: through our handle, which nobody else can share: deleting
            // by name could hit a NAME.part that another upload created after
            // ours was gone.
            FILE_DISPOSITION_INFO dispose{TRUE};
            (void)::SetFileInformationByHandle(part_, FileDispositionInfo, &dispose, sizeof dispose);
        }
        close(part_);
        close(final_);
    }

private:
    static void close(HANDLE& h) noexcept
    {
        if (h != INVALID_HANDLE_VALUE) ::CloseHandle(std::exchange(h, INVALID_HANDLE_VALUE));
    }
    static std::string message(DWORD error) { return std::system_category().message(static_cast<int>(error)); }

    std::filesystem::path target_;
    HANDLE part_ = INVALID_HANDLE_VALUE;
    HANDLE final_ = INVALID_HANDLE_VALUE;
    bool committed_ = false;
};

} // namespace file_store
