// How file_server stores one upload and opens one download: which names an
// upload owns, where its bytes go, how they are checked, when NAME is
// replaced, and how a download keeps NAME from changing while it is sent.
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
//              another program (or a download) has it open, and nobody can
//              open it while the upload runs, so replacing it at the end
//              does not fail.
//
// At the end NAME.part is read back, and its size and SHA-256 are what the
// server compares with the client's: it judges what was stored, not what
// was received. Only then is NAME.part renamed to NAME through its own
// handle, replacing NAME in one step. However the upload ends otherwise,
// NAME.part is deleted through its handle, never by name.
//
// A download opens NAME for reading, sharing only reading: other downloads
// may send it at the same time, but no upload can claim or replace it until
// the last of them is done, so the hash sent ahead of the content is the
// hash of the content sent.
//
// On Linux an open never refuses another, and the usual file systems take
// names that differ in case for different files. The claims are flock()
// locks there (file_lock.hpp): NAME.part and NAME locked exclusively, a
// download's NAME shared. The rename and the delete go by name, which is
// sound because a name locked by an upload stays that upload's (see
// incoming_file::claim).
//
// Every read and write is overlapped, on the context's completion port or
// io_uring (portico::random_access_file): a slow disk delays the upload that
// waits for it, never a pool thread and so never the other connections. The
// few calls left synchronous (create, lock, rename, delete) touch only the
// file system's metadata.
#pragma once

#if defined(_WIN32)
// The Windows SDK, included the way portico includes it.
#include <portico/detail/win/windows.hpp>
#else
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#endif
#include <portico/portico.hpp>

#include "file_lock.hpp"
#include "file_protocol.hpp"
#include "sha256.hpp"

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
    /// The file system said another holder has the file: the request is
    /// refused as busy rather than failed.
    bool busy = false;
    /// There is no such file (a download).
    bool missing = false;

    explicit operator bool() const noexcept { return !message.empty(); }
};

/// A file as read back from the disk.
struct stored_content {
    failure error;
    std::uint64_t size = 0;
    file_proto::digest hash{};
};

// snippet-begin: hash-file
/// Reads `size` bytes of `file` from its start with overlapped reads, 256 KiB
/// at a time, and hashes them. The pool thread that resumes after each read
/// hashes the block; none waits for the disk.
inline portico::task<stored_content> hash_file(portico::random_access_file& file, std::uint64_t size)
{
    stored_content result;
    std::vector<std::byte> block(256 * 1024);
    file_hash::sha256 hash;
    while (result.size < size) {
        const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(block.size(), size - result.size));
        auto [ec, n] = co_await file.read_all_at(result.size, portico::buffer(block.data(), want));
        hash.update(std::span<const std::byte>(block.data(), n));
        result.size += n;
        if (ec) {
            result.error = {ec == portico::errc::eof ? "the file ended early"
                                                     : "cannot read the file: " + ec.message()};
            co_return result;
        }
    }
    result.hash = hash.finish();
    co_return result;
}
// snippet-end: hash-file

/// Writes `bytes` to an upload's NAME.part, `part`, at `offset`.
inline portico::task<failure> write_part(portico::random_access_file& part, std::uint64_t offset,
                                         std::span<const std::byte> bytes)
{
    auto [ec, n] = co_await part.write_all_at(offset, portico::buffer(bytes.data(), bytes.size()));
    if (ec) co_return failure{"cannot write the file: " + ec.message()};
    co_return failure{};
}

/// Reads an upload's NAME.part, `part`, from its start: its size and
/// SHA-256 as stored.
inline portico::task<stored_content> read_part(portico::random_access_file& part)
{
    auto [size_ec, size] = part.size();
    if (size_ec) co_return stored_content{{"cannot read the file back: " + size_ec.message()}};
    stored_content stored = co_await hash_file(part, size);
    if (stored.error) stored.error.message = "cannot read the file back: " + stored.error.message;
    co_return stored;
}

#if defined(_WIN32)
inline std::string message(DWORD error) { return std::system_category().message(static_cast<int>(error)); }

/// One upload's claim on NAME and NAME.part, and NAME.part's content.
/// Thread safety: one thread at a time.
class incoming_file {
public:
    /// For the file `target`, written through `ctx`'s port; nothing is
    /// opened before claim().
    incoming_file(portico::io_context& ctx, std::filesystem::path target) : target_(std::move(target)), part_(ctx) {}
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
        // DELETE access: the rename and the delete go through this handle.
        // FILE_FLAG_OVERLAPPED: the writes and the read-back complete on the
        // context's port (random_access_file takes the handle over).
        HANDLE h = ::CreateFileW(part.c_str(), GENERIC_READ | GENERIC_WRITE | DELETE, 0, nullptr, CREATE_ALWAYS,
                                 FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OVERLAPPED, nullptr);
        if (h == INVALID_HANDLE_VALUE) {
            const DWORD error = ::GetLastError();
            if (error == ERROR_SHARING_VIOLATION) return {"an upload of that file is in progress", true};
            return {"cannot create the file: " + message(error)};
        }
        if (auto [ec] = part_.assign(reinterpret_cast<std::uintptr_t>(h)); ec) {
            return {"cannot use the file: " + ec.message()};
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

    /// Writes `bytes` to NAME.part at `offset` (overlapped).
    portico::task<failure> write(std::uint64_t offset, std::span<const std::byte> bytes)
    {
        return write_part(part_, offset, bytes);
    }

    /// Reads NAME.part from its start (overlapped): its size and SHA-256 as
    /// stored.
    portico::task<stored_content> read_back() { return read_part(part_); }

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
        if (!::SetFileInformationByHandle(part_handle(), FileRenameInfo, info.data(),
                                          static_cast<DWORD>(info.size() * sizeof(FILE_RENAME_INFO)))) {
            return {"cannot replace the file: " + message(::GetLastError())};
        }
        committed_ = true;
        part_.close();
        return {};
    }

    /// Unless commit() succeeded, deletes NAME.part; releases both names,
    /// so that the client may retry at once. Idempotent.
    void discard() noexcept
    {
        if (part_.is_open() && !committed_) {
            // NOTE: through our handle, which nobody else can share: deleting
            // by name could hit a NAME.part that another upload created after
            // ours was gone.
            FILE_DISPOSITION_INFO dispose{TRUE};
            (void)::SetFileInformationByHandle(part_handle(), FileDispositionInfo, &dispose, sizeof dispose);
        }
        part_.close();
        close(final_);
    }

private:
    HANDLE part_handle() const noexcept { return reinterpret_cast<HANDLE>(part_.native_handle()); }
    static void close(HANDLE& h) noexcept
    {
        if (h != INVALID_HANDLE_VALUE) ::CloseHandle(std::exchange(h, INVALID_HANDLE_VALUE));
    }

    std::filesystem::path target_;
    portico::random_access_file part_;
    HANDLE final_ = INVALID_HANDLE_VALUE;
    bool committed_ = false;
};

#else
/// One upload's claim on NAME and NAME.part, and NAME.part's content.
/// Thread safety: one thread at a time.
class incoming_file {
public:
    /// For the file `target`, written through `ctx`'s ring; nothing is
    /// opened before claim().
    incoming_file(portico::io_context& ctx, std::filesystem::path target)
        : target_(std::move(target)), part_path_(target_.string() + ".part"), part_(ctx), final_(ctx)
    {}
    incoming_file(const incoming_file&) = delete;
    incoming_file& operator=(const incoming_file&) = delete;
    ~incoming_file() { discard(); }

    /// Opens NAME.part and locks it exclusively, emptied, then locks NAME
    /// if it exists. Fails with `busy` if another upload, a download or a
    /// program that locks (file_client) holds either.
    failure claim()
    {
        for (;;) {
            if (auto [ec] =
                    part_.open(part_path_, portico::file_access::read_write, portico::file_creation::open_always);
                ec) {
                return {"cannot create the file: " + ec.message()};
            }
            const file_lock::outcome locked = file_lock::hold(part_, file_lock::kind::exclusive);
            if (locked != file_lock::outcome::held) {
                // NOTE: closed before anything else: NAME.part is another
                // upload's, and discard() must not delete it.
                const std::string why = errno_message();
                part_.close();
                if (locked == file_lock::outcome::busy) return {"an upload of that file is in progress", true};
                return {"cannot lock the file: " + why};
            }
            // RACE: the upload that held NAME.part before us may have renamed
            // or deleted it between our open and our lock: then the file we
            // locked has another name or none, and NAME.part is opened again.
            // Once the lock is ours, nobody else renames or deletes it.
            if (still_named()) break;
            part_.close();
        }
        // A stale NAME.part (left by a crash, locked by nobody) is taken over;
        // what it held is not kept.
        if (auto [ec] = part_.resize(0); ec) return {"cannot empty the file: " + ec.message()};
        if (auto [ec] = final_.open(target_, portico::file_access::read); ec) {
            if (ec == portico::errc::file_not_found) return {};
            return {"cannot open the file: " + ec.message()};
        }
        const file_lock::outcome locked = file_lock::hold(final_, file_lock::kind::exclusive);
        if (locked == file_lock::outcome::busy) return {"the file is in use on the server", true};
        if (locked == file_lock::outcome::failed) return {"cannot lock the file: " + errno_message()};
        return {};
    }

    /// Writes `bytes` to NAME.part at `offset`.
    portico::task<failure> write(std::uint64_t offset, std::span<const std::byte> bytes)
    {
        return write_part(part_, offset, bytes);
    }

    /// Reads NAME.part from its start: its size and SHA-256 as stored.
    portico::task<stored_content> read_back() { return read_part(part_); }

    /// Renames NAME.part to NAME, replacing NAME in one step.
    failure commit()
    {
        // NOTE: NAME stays locked until the rename is done, so no download
        // opens the older file in between; a download that opens NAME after
        // it finds NAME.part's file, still locked by us until part_ closes.
        if (::rename(part_path_.c_str(), target_.c_str()) != 0) return {"cannot replace the file: " + errno_message()};
        committed_ = true;
        part_.close();
        final_.close();
        return {};
    }

    /// Unless commit() succeeded, deletes NAME.part; releases both names,
    /// so that the client may retry at once. Idempotent.
    void discard() noexcept
    {
        // NOTE: by name, while we still hold the lock: until then NAME.part
        // names our file (see claim), never one another upload created.
        if (part_.is_open() && !committed_) (void)::unlink(part_path_.c_str());
        part_.close();
        final_.close();
    }

private:
    // True if NAME.part is the file part_ holds (the same device and inode).
    bool still_named() const noexcept
    {
        struct stat held{};
        struct stat named{};
        if (::fstat(static_cast<int>(part_.native_handle()), &held) != 0) return false;
        if (::stat(part_path_.c_str(), &named) != 0) return false;
        return held.st_dev == named.st_dev && held.st_ino == named.st_ino;
    }

    static std::string errno_message() { return std::generic_category().message(errno); }

    std::filesystem::path target_;
    std::filesystem::path part_path_;
    portico::random_access_file part_;
    portico::random_access_file final_;
    bool committed_ = false;
};
#endif

/// Opens NAME for a download: reading, shared only with readers (see
/// above). Fails with `missing` if there is no such file, `busy` if an
/// upload or another program holds it.
inline failure open_for_download(portico::random_access_file& file, const std::filesystem::path& target)
{
    constexpr const char* in_use = "the file is being uploaded, or is in use on the server";
    auto [ec] =
        file.open(target, portico::file_access::read, portico::file_creation::open_existing, portico::file_share::read);
    if (ec == portico::errc::file_not_found) return {"no such file", false, true};
    if (ec == portico::errc::file_in_use) return {in_use, true};
    if (ec) return {"cannot open the file: " + ec.message()};
    // On Linux the sharing is a lock (file_lock.hpp); on Windows the open took it.
    switch (file_lock::hold(file, file_lock::kind::shared)) {
    case file_lock::outcome::held: return {};
    case file_lock::outcome::busy: return {in_use, true};
    case file_lock::outcome::failed: break;
    }
    return {"cannot lock the file"};
}

} // namespace file_store
