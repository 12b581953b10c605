// The Windows part of the benchmark harness (bench/PROTOCOL.md, harness_platform.hpp): the
// Win32 call counter, which patches this program's import table, and msvcrt's pieces (binary
// stdout, _aligned_malloc). Built into the mingw servers only.
#include "harness_platform.hpp"

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <winsock2.h>
#include <mswsock.h>
#include <windows.h>

#include <fcntl.h>
#include <io.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <mutex>
#include <string_view>
#include <type_traits>

namespace bench::platform {
namespace {

// One counted function. The generated stub of record i increments `calls` and jumps through
// `target`, both addressed from the record's address it carries: their offsets are part of
// the stub's code.
struct alignas(64) function_record {
    std::uint64_t calls; // only through std::atomic_ref (and the stub's lock inc)
    std::uintptr_t target;
    char name[48];
};
static_assert(offsetof(function_record, calls) == 0 && offsetof(function_record, target) == 8);
static_assert(sizeof(function_record) == 64, "one cache line per counter: no false sharing");

constexpr std::size_t max_functions = max_counted_functions;

// Records are appended under registry_mutex and published by record_count (release); once
// published, a record's target and name never change.
function_record records[max_functions];
std::atomic<std::size_t> record_count{0};
std::mutex registry_mutex;

// NOTE: the stubs are generated once, all max_functions of them, and their memory is then made
// read-and-execute: counting a new function only fills in its record, so no code is written
// while another thread may be running a stub, and the counters (written on every call) live in
// data pages, away from the code (stores near running code cost a pipeline flush).
//
//   48 B8 <imm64>   mov rax, <record address>     rax: volatile, and no argument register
//   F0 48 FF 00     lock inc qword ptr [rax]      record.calls
//   FF 60 08        jmp qword ptr [rax + 8]       record.target, a tail jump: the stub never
//                                                 appears on the stack, so unwinding ignores it
constexpr std::size_t stub_size = 32;
std::byte* stubs = nullptr;

void generate_stubs()
{
    stubs = static_cast<std::byte*>(
        VirtualAlloc(nullptr, max_functions * stub_size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE));
    if (stubs == nullptr) {
        std::fputs("harness: VirtualAlloc for the call counter failed\n", stderr);
        std::exit(1);
    }
    for (std::size_t i = 0; i != max_functions; ++i) {
        unsigned char code[stub_size];
        std::memset(code, 0xCC, sizeof code); // int3 padding
        const auto record = reinterpret_cast<std::uintptr_t>(&records[i]);
        code[0] = 0x48;
        code[1] = 0xB8;
        std::memcpy(code + 2, &record, sizeof record);
        const unsigned char count_and_jump[] = {0xF0, 0x48, 0xFF, 0x00, 0xFF, 0x60, 0x08};
        std::memcpy(code + 10, count_and_jump, sizeof count_and_jump);
        std::memcpy(stubs + i * stub_size, code, sizeof code);
    }
    DWORD previous = 0;
    if (!VirtualProtect(stubs, max_functions * stub_size, PAGE_EXECUTE_READ, &previous)) {
        std::fputs("harness: VirtualProtect for the call counter failed\n", stderr);
        std::exit(1);
    }
    FlushInstructionCache(GetCurrentProcess(), stubs, max_functions * stub_size);
}

void bump(function_record* record) noexcept
{
    std::atomic_ref<std::uint64_t>(record->calls).fetch_add(1, std::memory_order_relaxed);
}

// Returns the record counting calls of `name` that go to `target` (the same function reached
// through the import table and through GetProcAddress shares one), or nullptr when the table
// is full (reported once on stderr; that function is then not counted). Requires
// registry_mutex.
[[nodiscard]] function_record* find_or_add_record_locked(std::uintptr_t target, std::string_view name)
{
    const std::size_t count = record_count.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i != count; ++i) {
        if (records[i].target == target && name == records[i].name) return &records[i];
    }
    if (count == max_functions) {
        static bool reported = false;
        if (!reported) std::fputs("harness: too many counted functions; some go uncounted\n", stderr);
        reported = true;
        return nullptr;
    }
    function_record& record = records[count];
    record.target = target;
    const std::size_t length = std::min(name.size(), sizeof record.name - 1);
    std::memcpy(record.name, name.data(), length);
    record.name[length] = '\0';
    record_count.store(count + 1, std::memory_order_release);
    return &record;
}

// The address to call instead of `target` so that the call is counted under `name`.
[[nodiscard]] std::uintptr_t counting_stub(std::uintptr_t target, std::string_view name)
{
    const std::lock_guard lock(registry_mutex);
    function_record* record = find_or_add_record_locked(target, name);
    if (record == nullptr) return target;
    return reinterpret_cast<std::uintptr_t>(stubs + static_cast<std::size_t>(record - records) * stub_size);
}

// A function replaced by a typed C++ wrapper instead of a stub, because it needs its arguments
// or results. `original` is set once (under registry_mutex) before the wrapper is handed out.
template <typename Function>
struct typed_hook {
    Function original = nullptr;
    function_record* record = nullptr;
};

typed_hook<decltype(&::GetQueuedCompletionStatus)> get_queued_completion_status;
typed_hook<decltype(&::GetQueuedCompletionStatusEx)> get_queued_completion_status_ex;
typed_hook<decltype(&::WSAIoctl)> wsa_ioctl;
typed_hook<decltype(&::GetProcAddress)> get_proc_address;

struct dequeue_counters {
    std::atomic<std::uint64_t> calls{0};
    std::atomic<std::uint64_t> completions{0};
};
constinit dequeue_counters dequeues;

// NOTE: dequeue_calls counts every return, timeouts and failures included; completions counts
// packets, and a failed I/O still delivers one (FALSE with *overlapped set). A return is
// counted with release after its call was: print_stats reads it first, with acquire, so a
// stats line never shows more returns than calls.
BOOL WINAPI counted_get_queued_completion_status(HANDLE port, LPDWORD bytes, PULONG_PTR key, LPOVERLAPPED* overlapped,
                                                 DWORD timeout)
{
    if (get_queued_completion_status.record != nullptr) bump(get_queued_completion_status.record);
    const BOOL ok = get_queued_completion_status.original(port, bytes, key, overlapped, timeout);
    dequeues.calls.fetch_add(1, std::memory_order_release);
    if (ok || *overlapped != nullptr) dequeues.completions.fetch_add(1, std::memory_order_relaxed);
    return ok;
}

BOOL WINAPI counted_get_queued_completion_status_ex(HANDLE port, LPOVERLAPPED_ENTRY entries, ULONG capacity,
                                                    PULONG removed, DWORD timeout, BOOL alertable)
{
    if (get_queued_completion_status_ex.record != nullptr) bump(get_queued_completion_status_ex.record);
    const BOOL ok = get_queued_completion_status_ex.original(port, entries, capacity, removed, timeout, alertable);
    dequeues.calls.fetch_add(1, std::memory_order_release);
    if (ok) dequeues.completions.fetch_add(*removed, std::memory_order_relaxed);
    return ok;
}

struct extension_function {
    GUID id;
    const char* name;
};

const extension_function extension_functions[] = {
    {WSAID_ACCEPTEX, "AcceptEx"},         {WSAID_CONNECTEX, "ConnectEx"},
    {WSAID_DISCONNECTEX, "DisconnectEx"}, {WSAID_GETACCEPTEXSOCKADDRS, "GetAcceptExSockaddrs"},
    {WSAID_TRANSMITFILE, "TransmitFile"}, {WSAID_TRANSMITPACKETS, "TransmitPackets"},
    {WSAID_WSARECVMSG, "WSARecvMsg"},     {WSAID_WSASENDMSG, "WSASendMsg"},
    {WSAID_WSAPOLL, "WSAPoll"},
};

char* append_text(char* out, std::string_view text)
{
    std::memcpy(out, text.data(), text.size());
    return out + text.size();
}

char* append_hex(char* out, std::uint64_t value, int digits)
{
    for (int shift = 4 * (digits - 1); shift >= 0; shift -= 4) *out++ = "0123456789abcdef"[(value >> shift) & 0xF];
    return out;
}

// The name an extension function is counted under: its own, or "ext:" and its GUID.
[[nodiscard]] std::string_view extension_name(const GUID& id, char (&buffer)[sizeof function_record::name])
{
    for (const extension_function& known : extension_functions) {
        if (std::memcmp(&known.id, &id, sizeof id) == 0) return known.name;
    }
    char* out = append_text(buffer, "ext:");
    out = append_hex(out, id.Data1, 8);
    *out++ = '-';
    out = append_hex(out, id.Data2, 4);
    *out++ = '-';
    out = append_hex(out, id.Data3, 4);
    *out++ = '-';
    for (const unsigned char byte : id.Data4) out = append_hex(out, byte, 2);
    return {buffer, static_cast<std::size_t>(out - buffer)};
}

int WSAAPI counted_wsa_ioctl(SOCKET socket, DWORD code, LPVOID in, DWORD in_size, LPVOID out, DWORD out_size,
                             LPDWORD returned, LPWSAOVERLAPPED overlapped, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine)
{
    if (wsa_ioctl.record != nullptr) bump(wsa_ioctl.record);
    const int result = wsa_ioctl.original(socket, code, in, in_size, out, out_size, returned, overlapped, routine);
    // NOTE: only a successful lookup is touched, so the caller's WSAGetLastError after a
    // failure still reads the original's error.
    if (result != 0 || code != SIO_GET_EXTENSION_FUNCTION_POINTER || in == nullptr || in_size != sizeof(GUID) ||
        out == nullptr || out_size < sizeof(std::uintptr_t)) {
        return result;
    }
    GUID id;
    std::memcpy(&id, in, sizeof id);
    std::uintptr_t function = 0;
    std::memcpy(&function, out, sizeof function);
    if (function == 0) return result;
    char buffer[sizeof function_record::name];
    function = counting_stub(function, extension_name(id, buffer));
    std::memcpy(out, &function, sizeof function);
    return result;
}

enum class dll { ws2_32, mswsock, kernel32, other };

struct counted_dll {
    dll library;
    std::string_view file;
    const wchar_t* wide_file;
    std::string_view stem;
};

const counted_dll counted_dlls[] = {
    {dll::ws2_32, "ws2_32.dll", L"ws2_32.dll", "ws2_32"},
    {dll::mswsock, "mswsock.dll", L"mswsock.dll", "mswsock"},
    {dll::kernel32, "kernel32.dll", L"kernel32.dll", "kernel32"},
};

[[nodiscard]] bool equal_ignoring_case(std::string_view a, std::string_view b)
{
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), [&](char x, char y) { return lower(x) == lower(y); });
}

[[nodiscard]] const counted_dll* dll_named(std::string_view file)
{
    for (const counted_dll& known : counted_dlls) {
        if (equal_ignoring_case(file, known.file)) return &known;
    }
    return nullptr;
}

[[nodiscard]] dll dll_of(HMODULE module)
{
    for (const counted_dll& known : counted_dlls) {
        if (module != nullptr && module == GetModuleHandleW(known.wide_file)) return known.library;
    }
    return dll::other;
}

// The kernel32 functions counted: the completion port itself, the overlapped-I/O calls a
// completion-port program makes on its handles (GetOverlappedResultEx: Windows 8's variant),
// and the file calls a download makes (open, size, read, close). Everything ws2_32 and
// mswsock export is counted.
constexpr std::string_view counted_kernel32_functions[] = {
    "CreateFileA",
    "CreateFileW",
    "GetFileSizeEx",
    "ReadFile",
    "WriteFile",
    "CloseHandle",
    "CreateIoCompletionPort",
    "GetQueuedCompletionStatus",
    "GetQueuedCompletionStatusEx",
    "PostQueuedCompletionStatus",
    "SetFileCompletionNotificationModes",
    "CancelIo",
    "CancelIoEx",
    "GetOverlappedResult",
    "GetOverlappedResultEx",
};

template <typename Function>
[[nodiscard]] std::uintptr_t install(typed_hook<Function>& hook, std::type_identity_t<Function> wrapper,
                                     std::uintptr_t target, std::string_view counted_name)
{
    const std::lock_guard lock(registry_mutex);
    if (hook.original == nullptr) hook.original = reinterpret_cast<Function>(target);
    if (!counted_name.empty() && hook.record == nullptr) hook.record = find_or_add_record_locked(target, counted_name);
    return reinterpret_cast<std::uintptr_t>(wrapper);
}

FARPROC WINAPI hooked_get_proc_address(HMODULE module, LPCSTR name);

// The address a call to `name` in `library`, normally going to `target`, should go to instead.
[[nodiscard]] std::uintptr_t counting_entry(dll library, std::string_view name, std::uintptr_t target)
{
    switch (library) {
    case dll::ws2_32:
        if (name == "WSAIoctl") return install(wsa_ioctl, &counted_wsa_ioctl, target, name);
        return counting_stub(target, name);
    case dll::mswsock: return counting_stub(target, name);
    case dll::kernel32:
        if (name == "GetQueuedCompletionStatus") {
            return install(get_queued_completion_status, &counted_get_queued_completion_status, target, name);
        }
        if (name == "GetQueuedCompletionStatusEx") {
            return install(get_queued_completion_status_ex, &counted_get_queued_completion_status_ex, target, name);
        }
        // NOTE: a program may find a counted function by name at run time rather than import
        // it (Asio does so for CancelIoEx); GetProcAddress hands out the counting entry too.
        // GetProcAddress itself is not counted.
        if (name == "GetProcAddress") return install(get_proc_address, &hooked_get_proc_address, target, {});
        if (std::find(std::begin(counted_kernel32_functions), std::end(counted_kernel32_functions), name) !=
            std::end(counted_kernel32_functions)) {
            return counting_stub(target, name);
        }
        return target;
    case dll::other: break;
    }
    return target;
}

FARPROC WINAPI hooked_get_proc_address(HMODULE module, LPCSTR name)
{
    const FARPROC function = get_proc_address.original(module, name);
    // NOTE: a lookup by ordinal passes the ordinal in place of the name pointer.
    if (function == nullptr || reinterpret_cast<std::uintptr_t>(name) <= 0xFFFF) return function;
    const dll library = dll_of(module);
    if (library == dll::other) return function;
    const auto target = reinterpret_cast<std::uintptr_t>(function);
    return reinterpret_cast<FARPROC>(counting_entry(library, name, target));
}

void write_slot(ULONGLONG* slot, std::uintptr_t value)
{
    DWORD previous = 0;
    if (!VirtualProtect(slot, sizeof *slot, PAGE_READWRITE, &previous)) {
        std::fputs("harness: VirtualProtect on the import table failed; a function goes uncounted\n", stderr);
        return;
    }
    *slot = value;
    VirtualProtect(slot, sizeof *slot, previous, &previous);
}

// Replaces the import table slot of every counted function with its counting entry.
void patch_imports()
{
    auto* base = reinterpret_cast<std::byte*>(GetModuleHandleW(nullptr));
    const auto* dos = reinterpret_cast<const IMAGE_DOS_HEADER*>(base);
    const auto* nt = reinterpret_cast<const IMAGE_NT_HEADERS64*>(base + dos->e_lfanew);
    const IMAGE_DATA_DIRECTORY& imports = nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_IMPORT];
    if (imports.VirtualAddress == 0) return;
    for (auto* descriptor = reinterpret_cast<const IMAGE_IMPORT_DESCRIPTOR*>(base + imports.VirtualAddress);
         descriptor->Name != 0; ++descriptor) {
        const counted_dll* library = dll_named(reinterpret_cast<const char*>(base + descriptor->Name));
        if (library == nullptr) continue;
        // NOTE: the loader overwrote FirstThunk (the IAT) with addresses; the names are only
        // left in OriginalFirstThunk, which GNU ld always emits.
        if (descriptor->OriginalFirstThunk == 0) {
            std::fputs("harness: an import descriptor has no name table; its functions go uncounted\n", stderr);
            continue;
        }
        const auto* names = reinterpret_cast<const IMAGE_THUNK_DATA64*>(base + descriptor->OriginalFirstThunk);
        auto* slots = reinterpret_cast<IMAGE_THUNK_DATA64*>(base + descriptor->FirstThunk);
        for (; names->u1.AddressOfData != 0; ++names, ++slots) {
            char by_ordinal[32];
            std::string_view name;
            if ((names->u1.Ordinal & IMAGE_ORDINAL_FLAG64) != 0) {
                char* out = append_text(by_ordinal, library->stem);
                *out++ = '#';
                out = std::to_chars(out, std::end(by_ordinal), names->u1.Ordinal & 0xFFFF).ptr;
                name = {by_ordinal, static_cast<std::size_t>(out - by_ordinal)};
            } else {
                name = reinterpret_cast<const IMAGE_IMPORT_BY_NAME*>(base + names->u1.AddressOfData)->Name;
            }
            const std::uintptr_t target = slots->u1.Function;
            const std::uintptr_t replacement = counting_entry(library->library, name, target);
            if (replacement != target) write_slot(&slots->u1.Function, replacement);
        }
    }
}

} // namespace

bool counts_calls() noexcept { return true; }

call_totals read_calls(call_count* out) noexcept
{
    call_totals totals;
    totals.dequeue_calls = dequeues.calls.load(std::memory_order_acquire);
    totals.completions = dequeues.completions.load(std::memory_order_relaxed);
    totals.functions = record_count.load(std::memory_order_acquire);
    for (std::size_t i = 0; i != totals.functions; ++i) {
        out[i] = {records[i].name, std::atomic_ref<std::uint64_t>(records[i].calls).load(std::memory_order_relaxed)};
    }
    return totals;
}

void start_counting()
{
    generate_stubs();
    patch_imports();
}

// NOTE: msvcrt's text mode would end every line with \r\n; the protocol's lines end with \n.
void use_binary_stdout() { _setmode(_fileno(stdout), _O_BINARY); }

void* aligned_block(std::size_t size, std::size_t alignment) noexcept { return _aligned_malloc(size, alignment); }

void free_aligned_block(void* block) noexcept { _aligned_free(block); }

} // namespace bench::platform
