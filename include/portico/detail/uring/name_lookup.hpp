// portico: one asynchronous name lookup on Linux — getaddrinfo on a thread
// of its own, resumed through the ring, abandoned on a stop request.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/resume_handshake.hpp>
#include <portico/detail/uring/error_map.hpp>
#include <portico/detail/uring/operation.hpp>
#include <portico/detail/uring/scheduler.hpp>
#include <portico/detail/uring/sockaddr.hpp>
#include <portico/error.hpp>
#include <portico/net/endpoint.hpp>
#include <portico/stop_token.hpp>

#include <netdb.h>
#include <sys/socket.h>

#include <atomic>
#include <cassert>
#include <cerrno>
#include <coroutine>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

PORTICO_NAMESPACE_BEGIN

namespace detail::uring {

/// Maps getaddrinfo's return value (and errno, for EAI_SYSTEM) to a portico
/// condition.
inline std::error_code resolve_error(int code, int system_error) noexcept
{
    switch (code) {
    case 0: return {};
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
    case EAI_FAIL: return make_error_code(errc::host_not_found);
    case EAI_SERVICE: return make_error_code(errc::service_not_found);
    case EAI_AGAIN: return make_error_code(errc::timed_out);
    case EAI_MEMORY: return make_error_code(errc::no_resources);
    case EAI_FAMILY:
    case EAI_SOCKTYPE:
    case EAI_BADFLAGS: return make_error_code(errc::invalid_argument);
    case EAI_SYSTEM: return socket_error(system_error);
    default: return make_error_code(errc::host_not_found);
    }
}

/// The system call a lookup makes. Tests swap it for a stand-in that
/// answers or stays silent deterministically; never changed otherwise.
struct lookup_functions {
    using start_fn = int (*)(const char*, const char*, const addrinfo*, addrinfo**);
    start_fn start;
};

inline lookup_functions& lookup_api() noexcept
{
    static lookup_functions api{&::getaddrinfo};
    return api;
}

/// The part of a lookup shared by the awaiting op and the thread that runs
/// getaddrinfo (two references): a stopped op resumes at once and may be
/// gone long before getaddrinfo returns, which nothing can interrupt. Who
/// resumes the op is settled by `handshake`, as on Windows: the lookup
/// thread (it posts the op's resumption), a stop (it abandons the lookup
/// and posts the resumption itself), or the starting thread (a stop that
/// came before it suspended).
struct lookup_state {
    std::atomic<int> refs{2};
    resume_handshake handshake;
    int code = 0;
    int system_error = 0;
    addrinfo* result = nullptr;
    /// Posted to resume the op on a pool thread; set by the op.
    operation* resume = nullptr;
    scheduler* sched = nullptr;
    /// lookup_api().start when the lookup began (a test may swap it back
    /// before this thread calls it).
    lookup_functions::start_fn start_fn = nullptr;
    std::string host;
    std::string service;
    addrinfo hints{};

    lookup_state() = default;
    lookup_state(const lookup_state&) = delete;
    lookup_state& operator=(const lookup_state&) = delete;
    ~lookup_state()
    {
        if (result != nullptr) ::freeaddrinfo(result);
    }

    void release() noexcept
    {
        if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }

    /// The lookup thread's whole life: resolve, then hand the answer over.
    void run() noexcept
    {
        code = start_fn(host.c_str(), service.empty() ? nullptr : service.c_str(), &hints, &result);
        system_error = code == EAI_SYSTEM ? errno : 0;
        // Running: resume on a pool thread, through the ring, never on this
        // one. Idle or cancel_pending: the op has not suspended yet; it sees
        // `done` and carries on inline. Done: a stop resumed the op already;
        // the answer is dropped with the state.
        if (handshake.complete() == resume_handshake::state::running) sched->post_started(resume);
        release();
    }
};

/// One lookup, from an awaiter's frame (the interface of the Windows one):
/// names copied by prepare(), started by start() from await_suspend, the
/// answer read by result() from await_resume. getaddrinfo blocks, so it
/// runs on a thread made for the lookup, never on a pool thread. A stop
/// request resumes the coroutine at once; the thread finishes on its own
/// and its answer is dropped. Allocates (the names, the shared state, the
/// thread, the result list).
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

    /// Copies the names (UTF-8; allocates).
    void prepare(std::string_view host, std::string_view service)
    {
        host_ = std::string(host);
        service_ = std::string(service);
    }

    /// Starts the lookup for `awaiting`, restricted to IPv4 (`ip_version`
    /// 4), IPv6 (6) or neither (0), observing `token`. True if the
    /// coroutine is now suspended; false if it continues at once (a stop, or
    /// no thread could be made: no_resources). Allocates the shared state
    /// (may throw).
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
        state_->start_fn = lookup_api().start;
        state_->host = std::move(host_);
        state_->service = std::move(service_);
        state_->hints.ai_family = ip_version == 4 ? AF_INET : ip_version == 6 ? AF_INET6 : AF_UNSPEC;
        // One entry per address, not one per socket type.
        state_->hints.ai_socktype = SOCK_STREAM;
        if (token.stop_possible()) cancel_.emplace(std::move(token), canceller{this});
        sched_->work_started();
        try {
            std::thread([state = state_] { state->run(); }).detach();
        } catch (...) {
            // No thread: nothing runs the lookup, so its reference is ours.
            state_->code = EAI_MEMORY;
            (void)state_->handshake.complete();
            state_->refs.fetch_sub(1, std::memory_order_relaxed);
            sched_->work_finished();
            return false;
        }
        // RACE: once `running` is published, the lookup thread or a stop may
        // post the resumption at once and this frame may be resumed and
        // gone: touch nothing more. A stop that came first abandons it.
        bool stopped = false;
        if (state_->handshake.suspend_or_abandon(stopped)) return true;
        if (stopped) stopped_ = true;
        sched_->work_finished();
        return false;
    }

    /// The endpoints found, or the error: operation_aborted after a stop;
    /// host_not_found when the system answered with no usable address.
    io_result<std::vector<endpoint>> result()
    {
        cancel_.reset(); // waits for a stop callback running elsewhere
        if (stopped_) return {make_error_code(errc::operation_aborted), {}};
        if (auto ec = resolve_error(state_->code, state_->system_error)) return {ec, {}};
        std::vector<endpoint> endpoints;
        for (const addrinfo* ai = state_->result; ai != nullptr; ai = ai->ai_next) {
            if (ai->ai_addr == nullptr || ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
            sockaddr_storage storage{};
            std::memcpy(&storage, ai->ai_addr, ai->ai_addrlen);
            if (auto e = from_sockaddr(storage, ai->ai_addrlen)) endpoints.push_back(*e);
        }
        if (endpoints.empty()) return {make_error_code(errc::host_not_found), {}};
        return {{}, std::move(endpoints)};
    }

private:
    struct resume_step : operation {
        explicit resume_step(name_lookup* l) noexcept : operation(&resume_step::run), lookup(l) {}
        static void run(operation* base, std::uintptr_t, std::uint32_t) noexcept
        {
            static_cast<resume_step*>(base)->continuation.resume();
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
            // lookup thread and resume the op now: getaddrinfo cannot be
            // interrupted, its answer will be dropped.
            if (l->handshake.complete_from(resume_handshake::state::running)) {
                op->stopped_ = true;
                op->sched_->post_started(&op->resume_);
            }
        }
    };

    scheduler* sched_;
    std::string host_;
    std::string service_;
    lookup_state* state_ = nullptr;
    bool stopped_ = false;
    resume_step resume_;
    std::optional<portico::stop_callback<canceller>> cancel_;
};

} // namespace detail::uring

PORTICO_NAMESPACE_END
