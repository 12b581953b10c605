// portico: one asynchronous name lookup — GetAddrInfoExW with a completion
// routine, resumed through the completion port, cancellable.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/resume_handshake.hpp>
#include <portico/detail/win/error_map.hpp>
#include <portico/detail/win/overlapped_op.hpp>
#include <portico/detail/win/scheduler.hpp>
#include <portico/detail/win/sockaddr.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/error.hpp>
#include <portico/net/endpoint.hpp>
#include <portico/stop_token.hpp>

#include <atomic>
#include <cassert>
#include <coroutine>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

PORTICO_NAMESPACE_BEGIN

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

/// The system calls a lookup makes. Tests swap them for stand-ins that
/// answer, cancel or stay silent deterministically; never changed otherwise.
struct lookup_functions {
    using start_fn = INT(WSAAPI*)(PCWSTR, PCWSTR, DWORD, LPGUID, const ADDRINFOEXW*, PADDRINFOEXW*, timeval*,
                                  LPOVERLAPPED, LPLOOKUPSERVICE_COMPLETION_ROUTINE, LPHANDLE);
    using cancel_fn = INT(WSAAPI*)(LPHANDLE);
    start_fn start;
    /// GetAddrInfoExCancel (Windows 8 and later), looked up at run time:
    /// mingw-w64's headers do not declare it. Should it be missing, a
    /// cancelled lookup is abandoned instead (the op resumes all the same).
    cancel_fn cancel;
};

inline lookup_functions& lookup_api() noexcept
{
    static lookup_functions api{&::GetAddrInfoExW,
                                reinterpret_cast<lookup_functions::cancel_fn>(reinterpret_cast<void*>(
                                    ::GetProcAddress(::GetModuleHandleW(L"ws2_32.dll"), "GetAddrInfoExCancel")))};
    return api;
}

/// The part of a lookup shared by the awaiting op and the system's
/// completion routine (two references): a cancelled op resumes at once and
/// may be gone long before the system gives the lookup up. Who resumes the
/// op is settled by `handshake`: the routine (it posts the op's resumption),
/// a stop (it abandons the lookup and posts the resumption itself), or the
/// starting thread (an answer or a stop that came before it suspended).
struct lookup_state : OVERLAPPED {
    std::atomic<int> refs{2};
    resume_handshake handshake;
    DWORD error = 0;
    PADDRINFOEXW result = nullptr;
    HANDLE cancel_handle = nullptr;
    /// Posted to resume the op on a pool thread; set by the op.
    overlapped_op* resume = nullptr;
    scheduler* sched = nullptr;
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

    /// Starts GetAddrInfoExW in its asynchronous form (the system resolves
    /// on its own threads; no pool thread waits for DNS). Returns
    /// WSA_IO_PENDING, or the answer when the system had it at once.
    INT start() noexcept
    {
        const PCWSTR service_name = service.empty() ? nullptr : service.c_str();
        return lookup_api().start(host.c_str(), service_name, NS_ALL, nullptr, &hints, &result, nullptr, this,
                                  reinterpret_cast<LPLOOKUPSERVICE_COMPLETION_ROUTINE>(&on_done), &cancel_handle);
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
        // Running: resume on a pool thread, through the port, never on this
        // one. Idle or cancel_pending: the op has not suspended yet; it sees
        // `done` and carries on inline. Done: a stop resumed the op already;
        // the answer is dropped with the state.
        if (self->handshake.complete() == resume_handshake::state::running) self->sched->post_started(self->resume);
        self->release();
    }
};

/// One lookup, from an awaiter's frame: names copied by prepare(), started
/// by start() from await_suspend, the answer read by result() from
/// await_resume. A stop request asks the system to cancel and resumes the
/// coroutine at once, even if the system cannot cancel (the late answer is
/// dropped). Allocates (the names, the shared state, the result list).
class name_lookup {
public:
    explicit name_lookup(scheduler& sched) noexcept : sched_(&sched), resume_(this) {}
    /// Moves a lookup not started yet.
    name_lookup(name_lookup&& other) noexcept
        : sched_(other.sched_), host_(std::move(other.host_)), service_(std::move(other.service_)), resume_(this)
    {
        assert(other.state_ == nullptr && "moving a lookup that was already started");
    }
    name_lookup(const name_lookup&) = delete;
    name_lookup& operator=(const name_lookup&) = delete;
    name_lookup& operator=(name_lookup&&) = delete;
    ~name_lookup()
    {
        if (state_ != nullptr) state_->release();
    }

    /// Copies the names (UTF-8 in; allocates).
    void prepare(std::string_view host, std::string_view service)
    {
        host_ = widen(host);
        service_ = widen(service);
    }

    /// Starts the lookup for `awaiting`, restricted to IPv4 (`ip_version`
    /// 4), IPv6 (6) or neither (0), observing `token`. True if the
    /// coroutine is now suspended; false if it continues at once (an answer
    /// at once, or a stop). Allocates the shared state (may throw).
    bool start(std::coroutine_handle<> awaiting, portico::stop_token token, int ip_version)
    {
        resume_.continuation = awaiting;
        if (token.stop_requested()) {
            stopped_ = true;
            return false;
        }
        state_ = new lookup_state;
        state_->resume = &resume_;
        state_->sched = sched_;
        state_->host = std::move(host_);
        state_->service = std::move(service_);
        state_->hints.ai_family = ip_version == 4 ? AF_INET : ip_version == 6 ? AF_INET6 : AF_UNSPEC;
        // One entry per address, not one per socket type.
        state_->hints.ai_socktype = SOCK_STREAM;
        if (token.stop_possible()) cancel_.emplace(std::move(token), canceller{this});
        sched_->work_started();
        const INT rc = state_->start();
        if (rc != WSA_IO_PENDING) {
            // Answered at once (a cached or local name, or an error): the
            // routine will not run, so its reference is ours to drop.
            state_->error = static_cast<DWORD>(rc);
            (void)state_->handshake.complete();
            state_->refs.fetch_sub(1, std::memory_order_relaxed);
            sched_->work_finished();
            return false;
        }
        // RACE: once `running` is published, the routine or a stop may post
        // the resumption at once and this frame may be resumed and gone:
        // touch nothing more. A stop that came first abandons the lookup.
        bool stopped = false;
        if (state_->handshake.suspend_or_abandon(stopped)) return true;
        if (stopped) {
            stopped_ = true;
            state_->cancel_lookup();
        }
        sched_->work_finished();
        return false;
    }

    /// The endpoints found, or the error: operation_aborted after a stop;
    /// host_not_found when the system answered with no usable address.
    io_result<std::vector<endpoint>> result()
    {
        cancel_.reset(); // waits for a stop callback running elsewhere
        if (stopped_) return {make_error_code(errc::operation_aborted), {}};
        if (auto ec = resolve_error(state_->error)) return {ec, {}};
        std::vector<endpoint> endpoints;
        // NOTE: mingw-w64's ADDRINFOEXW declares ai_next as a pointer to a
        // misspelt struct (addrinfoexW, not addrinfoExW): same layout,
        // different name, hence the cast.
        for (auto* ai = state_->result; ai != nullptr; ai = reinterpret_cast<ADDRINFOEXW*>(ai->ai_next)) {
            if (auto e = from_sockaddr(ai->ai_addr, static_cast<int>(ai->ai_addrlen))) endpoints.push_back(*e);
        }
        if (endpoints.empty()) return {make_error_code(errc::host_not_found), {}};
        return {{}, std::move(endpoints)};
    }

private:
    struct resume_packet : overlapped_op {
        explicit resume_packet(name_lookup* l) noexcept : overlapped_op(&resume_packet::run), lookup(l) {}
        static void run(overlapped_op* base, std::uintptr_t, std::uint32_t) noexcept
        {
            static_cast<resume_packet*>(base)->continuation.resume();
        }
        name_lookup* lookup;
        std::coroutine_handle<> continuation;
    };

    struct canceller {
        name_lookup* op;
        void operator()() const noexcept
        {
            lookup_state* l = op->state_;
            if (!l->handshake.request_cancel()) return; // before suspending (the starter ends it), or done
            // NOTE: ~stop_callback waits for us, so the op (and its reference
            // on the state) is alive here. Take the resumption from the
            // routine, ask the system to stop, and resume the op now rather
            // than when (or if) the system gives up.
            if (l->handshake.complete_from(resume_handshake::state::running)) {
                op->stopped_ = true;
                l->cancel_lookup();
                op->sched_->post_started(&op->resume_);
            }
        }
    };

    scheduler* sched_;
    std::wstring host_;
    std::wstring service_;
    lookup_state* state_ = nullptr;
    bool stopped_ = false;
    resume_packet resume_;
    std::optional<portico::stop_callback<canceller>> cancel_;
};

} // namespace detail::win

PORTICO_NAMESPACE_END
