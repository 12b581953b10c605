// portico: resolver — host and service names to endpoints, asynchronously.
#pragma once

#include <portico/config.hpp>

#if PORTICO_BACKEND_NONE
#error "portico: resolver needs an I/O backend; this platform has none yet"
#endif

#include <portico/coro/task.hpp>
#include <portico/detail/win/error_map.hpp>
#include <portico/detail/win/overlapped_op.hpp>
#include <portico/detail/win/scheduler.hpp>
#include <portico/detail/win/sockaddr.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/error.hpp>
#include <portico/io_context.hpp>
#include <portico/net/address.hpp>
#include <portico/net/endpoint.hpp>
#include <portico/stop_token.hpp>

#include <atomic>
#include <cassert>
#include <charconv>
#include <coroutine>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

PORTICO_NAMESPACE_BEGIN

/// Which address families a lookup returns.
enum class resolve_family : unsigned char { any, v4, v6 };

namespace detail::win {

/// Maps a name-resolution error (GetAddrInfoExW's return or completion
/// code) to a portico condition.
inline std::error_code resolve_error(DWORD error) noexcept
{
    switch (error) {
    case 0: return {};
    case WSAHOST_NOT_FOUND:
    case WSANO_DATA: return make_error_code(errc::host_not_found);
    case WSATYPE_NOT_FOUND: return make_error_code(errc::service_not_found);
    case WSATRY_AGAIN: return make_error_code(errc::timed_out);
    case WSA_E_CANCELLED:
    case WSAECANCELLED:
    case ERROR_OPERATION_ABORTED: return make_error_code(errc::operation_aborted);
    case WSAEAFNOSUPPORT:
    case WSAEINVAL: return make_error_code(errc::invalid_argument);
    default: return socket_error(error);
    }
}

/// UTF-8 to UTF-16 for the wide Winsock names.
inline std::wstring widen(std::string_view text)
{
    if (text.empty()) return {};
    const int n = ::MultiByteToWideChar(CP_UTF8, 0, text.data(), static_cast<int>(text.size()), nullptr, 0);
    std::wstring out(static_cast<std::size_t>(n), L'\0');
    ::MultiByteToWideChar(CP_UTF8, 0, text.data(), static_cast<int>(text.size()), out.data(), n);
    return out;
}

/// The system calls a lookup makes. A seam for tests, which put in a lookup
/// that stays pending to exercise cancellation deterministically; never
/// changed otherwise.
struct lookup_functions {
    using start_fn = INT(WSAAPI*)(PCWSTR, PCWSTR, DWORD, LPGUID, const ADDRINFOEXW*, PADDRINFOEXW*, timeval*,
                                  LPOVERLAPPED, LPLOOKUPSERVICE_COMPLETION_ROUTINE, LPHANDLE);
    using cancel_fn = INT(WSAAPI*)(LPHANDLE);
    start_fn start;
    /// GetAddrInfoExCancel, looked up at run time (older SDK headers do not
    /// declare it; a system without it cannot cancel, and portico then
    /// abandons the lookup instead).
    cancel_fn cancel;
};

inline lookup_functions& lookup_api() noexcept
{
    static lookup_functions api{&::GetAddrInfoExW,
                                reinterpret_cast<lookup_functions::cancel_fn>(reinterpret_cast<void*>(
                                    ::GetProcAddress(::GetModuleHandleW(L"ws2_32.dll"), "GetAddrInfoExCancel")))};
    return api;
}

/// One asynchronous lookup, shared by the awaiting op and the system's
/// completion routine (two references): a cancelled op resumes at once and
/// may be gone long before the system gives the lookup up.
struct lookup_state : OVERLAPPED {
    /// idle: being started; running: the op is suspended; cancel_pending: a
    /// stop came before the op suspended; cancelled: the op was resumed with
    /// operation_aborted; done: the routine delivered the answer.
    enum class phase : unsigned char { idle, running, cancel_pending, cancelled, done };

    std::atomic<int> refs{2};
    std::atomic<phase> state{phase::idle};
    DWORD error = 0;
    PADDRINFOEXW result = nullptr;
    HANDLE cancel_handle = nullptr;
    /// Posted to resume the op on a pool thread; set by the op.
    overlapped_op* resume = nullptr;
    scheduler* sched = nullptr;
    /// The names and hints, kept here for the fallback thread, which may
    /// outlive a cancelled op.
    std::wstring host;
    std::wstring service;
    ADDRINFOEXW hints{};

    lookup_state() noexcept : OVERLAPPED{} {}
    lookup_state(const lookup_state&) = delete;
    lookup_state& operator=(const lookup_state&) = delete;
    ~lookup_state()
    {
        if (result != nullptr) ::FreeAddrInfoExW(result);
    }

    void release() noexcept
    {
        if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }

    /// Starts the lookup in the system's asynchronous form; where that form
    /// is refused (systems before Windows 8), runs the synchronous form on a
    /// thread of its own, which then reports like the completion routine.
    /// Either way no pool thread waits for DNS. Returns WSA_IO_PENDING, or
    /// the answer when the system had it at once.
    INT start()
    {
        const PCWSTR service_name = service.empty() ? nullptr : service.c_str();
        const INT rc =
            lookup_api().start(host.c_str(), service_name, NS_ALL, nullptr, &hints, &result, nullptr, this,
                               reinterpret_cast<LPLOOKUPSERVICE_COMPLETION_ROUTINE>(&on_done), &cancel_handle);
        if (rc != WSAEINVAL && rc != WSAEOPNOTSUPP) return rc;
        std::thread([this] {
            const PCWSTR name = service.empty() ? nullptr : service.c_str();
            const INT answer = lookup_api().start(host.c_str(), name, NS_ALL, nullptr, &hints, &result, nullptr,
                                                  nullptr, nullptr, nullptr);
            on_done(static_cast<DWORD>(answer), 0, this);
        }).detach();
        return WSA_IO_PENDING;
    }

    void cancel_lookup() noexcept
    {
        if (auto cancel = lookup_api().cancel; cancel != nullptr) cancel(&cancel_handle);
    }

    // Runs on a system thread when the lookup ends (also after a cancel).
    static void CALLBACK on_done(DWORD code, DWORD, LPWSAOVERLAPPED overlapped) noexcept
    {
        auto* self = static_cast<lookup_state*>(overlapped);
        self->error = code;
        auto s = self->state.load(std::memory_order_acquire);
        for (;;) {
            // Cancelled: the op was resumed with operation_aborted already
            // and reads nothing more; the answer is dropped with the state.
            if (s == phase::cancelled) break;
            if (self->state.compare_exchange_weak(s, phase::done, std::memory_order_acq_rel)) {
                // Running: resume on a pool thread, through the port, never
                // on this one. Idle or cancel_pending: the op has not
                // suspended yet; it sees `done` and carries on inline.
                if (s == phase::running) self->sched->post_started(self->resume);
                break;
            }
        }
        self->release();
    }
};

} // namespace detail::win

/// Awaiter of resolver::resolve(). Yields io_result<std::vector<endpoint>>:
/// every address found, in the order the system prefers, each with the
/// service's port. Errors: host_not_found, service_not_found, timed_out (the
/// name server did not answer), invalid_argument, operation_aborted (stop
/// requested: the lookup is cancelled and the coroutine resumes once).
///
/// A literal address with a numeric port never touches DNS and completes at
/// once. Otherwise the lookup is GetAddrInfoExW in its asynchronous form: the
/// system resolves on its own threads and the completion is posted to the
/// io_context, so no pool thread ever blocks on DNS. Where the system refuses
/// that form (before Windows 8), the lookup runs on a thread of its own.
/// A stop request asks the system to cancel and resumes the coroutine at
/// once, even if the system cannot cancel (the late answer is dropped).
/// Allocates (the names, the lookup's state, the result list).
class [[nodiscard]] resolve_op {
public:
    /// Made by resolver::resolve(). Nothing is looked up before it is awaited,
    /// but the setup is done here: an empty `host` is invalid_argument; a
    /// literal address with a numeric port is the result at once
    /// (host_not_found if its family is not `family`); otherwise the names are
    /// copied (allocating).
    resolve_op(io_context& ctx, std::string_view host, std::string_view service, resolve_family family)
        : sched_(&ctx.scheduler_impl()), family_(family), resume_(this)
    {
        std::uint16_t port = 0;
        const auto [end, ec] = std::from_chars(service.data(), service.data() + service.size(), port);
        const bool numeric_port = !service.empty() && ec == std::errc{} && end == service.data() + service.size();
        if (host.empty()) {
            error_ = make_error_code(errc::invalid_argument);
            return;
        }
        if (auto literal = address::parse(host); !literal.error() && numeric_port) {
            const address a = literal.value_unchecked();
            if ((family == resolve_family::v4 && a.is_v6()) || (family == resolve_family::v6 && a.is_v4())) {
                error_ = make_error_code(errc::host_not_found);
            } else {
                endpoints_.push_back(endpoint{a, port});
            }
            literal_ = true;
            return;
        }
        host_ = detail::win::widen(host);
        service_ = detail::win::widen(service);
    }

    /// Moves a resolve not awaited yet (when_all, with_timeout... take
    /// awaitables by value).
    resolve_op(resolve_op&& other) noexcept
        : sched_(other.sched_), family_(other.family_), literal_(other.literal_), error_(other.error_),
          endpoints_(std::move(other.endpoints_)), host_(std::move(other.host_)), service_(std::move(other.service_)),
          resume_(this)
    {
        assert(other.lookup_ == nullptr && "moving a resolve that was already awaited");
    }
    resolve_op(const resolve_op&) = delete;
    resolve_op& operator=(const resolve_op&) = delete;
    resolve_op& operator=(resolve_op&&) = delete;

    ~resolve_op()
    {
        if (lookup_ != nullptr) lookup_->release();
    }

    /// @name Awaiter protocol
    /// @{

    /// Awaiter protocol, called by co_await: completes at once for a literal,
    /// a setup error, a stop already requested (operation_aborted) or an
    /// answer the system gives at once; otherwise suspends until the lookup
    /// ends or a stop request cancels it, and resumes on a pool thread.
    /// await_suspend allocates the lookup's state (and may throw what that
    /// allocation throws). await_resume yields the
    /// io_result<std::vector<endpoint>> described above.
    bool await_ready() const noexcept { return literal_ || static_cast<bool>(error_); }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> awaiting)
    {
        using phase = detail::win::lookup_state::phase;
        resume_.continuation = awaiting;
        portico::stop_token token = detail::stop_token_of(awaiting);
        if (token.stop_requested()) {
            error_ = make_error_code(errc::operation_aborted);
            return false;
        }
        lookup_ = new detail::win::lookup_state;
        lookup_->resume = &resume_;
        lookup_->sched = sched_;
        lookup_->host = std::move(host_);
        lookup_->service = std::move(service_);
        lookup_->hints.ai_family = family_ == resolve_family::v4   ? AF_INET
                                   : family_ == resolve_family::v6 ? AF_INET6
                                                                   : AF_UNSPEC;
        // One entry per address, not one per socket type.
        lookup_->hints.ai_socktype = SOCK_STREAM;
        if (token.stop_possible()) cancel_.emplace(std::move(token), canceller{this});
        sched_->work_started();
        const INT rc = lookup_->start();
        if (rc != WSA_IO_PENDING) {
            // Answered at once (a cached or local name, or an error): the
            // routine will not run, so its reference is ours to drop.
            lookup_->error = static_cast<DWORD>(rc);
            lookup_->state.store(phase::done, std::memory_order_relaxed);
            lookup_->refs.fetch_sub(1, std::memory_order_relaxed);
            sched_->work_finished();
            return false;
        }
        auto s = lookup_->state.load(std::memory_order_acquire);
        for (;;) {
            if (s == phase::done) {
                // Answered before we got here: carry on inline.
                sched_->work_finished();
                return false;
            }
            if (s == phase::cancel_pending) {
                // A stop came while we were starting: resume ourselves with
                // operation_aborted (below, inline) and abandon the lookup.
                if (lookup_->state.compare_exchange_weak(s, phase::cancelled, std::memory_order_acq_rel)) {
                    lookup_->cancel_lookup();
                    sched_->work_finished();
                    return false;
                }
                continue;
            }
            // RACE: once `running` is published, the routine or a stop may
            // post the resumption at once and this frame may be resumed and
            // gone: touch nothing more.
            if (lookup_->state.compare_exchange_weak(s, phase::running, std::memory_order_acq_rel)) return true;
        }
    }

    io_result<std::vector<endpoint>> await_resume()
    {
        using phase = detail::win::lookup_state::phase;
        cancel_.reset();
        if (error_ || literal_) return {error_, error_ ? std::vector<endpoint>{} : std::move(endpoints_)};
        if (lookup_->state.load(std::memory_order_acquire) == phase::cancelled) {
            return {make_error_code(errc::operation_aborted), {}};
        }
        auto ec = detail::win::resolve_error(lookup_->error);
        if (ec) return {ec, {}};
        // NOTE: mingw-w64's ADDRINFOEXW declares ai_next as a pointer to a
        // misspelt struct (addrinfoexW, not addrinfoExW): same layout,
        // different name, hence the cast.
        for (auto* ai = lookup_->result; ai != nullptr; ai = reinterpret_cast<ADDRINFOEXW*>(ai->ai_next)) {
            if (auto e = detail::win::from_sockaddr(ai->ai_addr, static_cast<int>(ai->ai_addrlen))) {
                endpoints_.push_back(*e);
            }
        }
        if (endpoints_.empty()) return {make_error_code(errc::host_not_found), {}};
        return {{}, std::move(endpoints_)};
    }
    /// @}

private:
    struct resume_packet : detail::win::overlapped_op {
        explicit resume_packet(resolve_op* o) noexcept : overlapped_op(&resume_packet::run), op(o) {}
        static void run(overlapped_op* base, ULONG_PTR, DWORD) noexcept
        {
            static_cast<resume_packet*>(base)->continuation.resume();
        }
        resolve_op* op;
        std::coroutine_handle<> continuation;
    };

    struct canceller {
        resolve_op* op;
        void operator()() const noexcept
        {
            using phase = detail::win::lookup_state::phase;
            detail::win::lookup_state* l = op->lookup_;
            auto s = l->state.load(std::memory_order_acquire);
            for (;;) {
                if (s == phase::idle) {
                    if (l->state.compare_exchange_weak(s, phase::cancel_pending, std::memory_order_acq_rel)) return;
                } else if (s == phase::running) {
                    if (l->state.compare_exchange_weak(s, phase::cancelled, std::memory_order_acq_rel)) {
                        // NOTE: ~stop_callback waits for us, so the op (and
                        // its reference on the state) is alive here. Ask the
                        // system to stop, and resume the op now rather than
                        // when (or if) the system gives up.
                        l->cancel_lookup();
                        op->sched_->post_started(&op->resume_);
                        return;
                    }
                } else {
                    return; // done, or already cancelled
                }
            }
        }
    };

    detail::win::scheduler* sched_;
    resolve_family family_;
    bool literal_ = false;
    std::error_code error_;
    std::vector<endpoint> endpoints_;
    std::wstring host_;
    std::wstring service_;
    detail::win::lookup_state* lookup_ = nullptr;
    resume_packet resume_;
    std::optional<portico::stop_callback<canceller>> cancel_;
};

/// Looks up host and service names. A plain handle to an io_context: cheap
/// to copy, any number of lookups at once, from any thread.
class resolver {
public:
    /// A resolver whose lookups complete on `ctx`, which must outlive it and
    /// its lookups.
    explicit resolver(io_context& ctx) noexcept : ctx_(&ctx) {}

    /// Resolves `host` (a name, or a literal IPv4 or IPv6 address) and
    /// `service` (a port number, or a name such as "http") to endpoints of
    /// the given family. See resolve_op.
    [[nodiscard]] resolve_op resolve(std::string_view host, std::string_view service,
                                     resolve_family family = resolve_family::any)
    {
        return resolve_op(*ctx_, host, service, family);
    }

private:
    io_context* ctx_;
};

PORTICO_NAMESPACE_END
