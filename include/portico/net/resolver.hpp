// portico: resolver — host and service names to endpoints, asynchronously.
#pragma once

#include <portico/config.hpp>
#include <portico/coro/task.hpp>
#include <portico/detail/backend.hpp>
#include <portico/error.hpp>
#include <portico/io_context.hpp>
#include <portico/net/address.hpp>
#include <portico/net/endpoint.hpp>
#include <portico/stop_token.hpp>

#include <charconv>
#include <coroutine>
#include <cstdint>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

PORTICO_NAMESPACE_BEGIN

/// Which address families a lookup returns.
enum class resolve_family : unsigned char { any, v4, v6 };

/// Awaiter of resolver::resolve(). Yields io_result<std::vector<endpoint>>:
/// every address found, in the order the system prefers, each with the
/// service's port. Errors: host_not_found, service_not_found, timed_out (the
/// name server did not answer), invalid_argument, operation_aborted (stop
/// requested: the lookup is cancelled and the coroutine resumes once).
///
/// A literal address with a numeric port never touches DNS and completes at
/// once. Otherwise the system resolves on its own threads (GetAddrInfoExW in
/// its asynchronous form on Windows) and the completion is posted to the
/// io_context, so no pool thread ever blocks on DNS. A stop request asks the
/// system to cancel and resumes the coroutine at once, even if the system
/// cannot cancel (the late answer is dropped). Awaited once; movable until
/// then. Allocates (the names, the lookup's state, the result list).
class [[nodiscard]] resolve_op {
public:
    /// Made by resolver::resolve(). Nothing is looked up before it is awaited,
    /// but the setup is done here: an empty `host` is invalid_argument; a
    /// literal address with a numeric port is the result at once
    /// (host_not_found if its family is not `family`); otherwise the names are
    /// copied (allocating).
    resolve_op(io_context& ctx, std::string_view host, std::string_view service, resolve_family family)
        : family_(family), lookup_(detail::context_access::scheduler(ctx))
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
        lookup_.prepare(host, service);
    }

    /// Moves a resolve not awaited yet (when_all, with_timeout... take
    /// awaitables by value).
    resolve_op(resolve_op&& other) noexcept = default;
    resolve_op(const resolve_op&) = delete;
    resolve_op& operator=(const resolve_op&) = delete;
    resolve_op& operator=(resolve_op&&) = delete;
    ~resolve_op() = default;

    /// Completes at once for a literal or a setup error.
    bool await_ready() const noexcept { return literal_ || static_cast<bool>(error_); }

    /// Starts the lookup; completes at once on a stop already requested
    /// (operation_aborted) or an answer the system gives at once, otherwise
    /// resumes on a pool thread. Allocates the lookup's state (and may throw
    /// what that allocation throws).
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> awaiting)
    {
        const int ip_version = family_ == resolve_family::v4 ? 4 : family_ == resolve_family::v6 ? 6 : 0;
        return lookup_.start(awaiting, detail::stop_token_of(awaiting), ip_version);
    }

    /// The io_result<std::vector<endpoint>> described above.
    io_result<std::vector<endpoint>> await_resume()
    {
        if (error_ || literal_) return {error_, error_ ? std::vector<endpoint>{} : std::move(endpoints_)};
        return lookup_.result();
    }

private:
    resolve_family family_;
    bool literal_ = false;
    std::error_code error_;
    std::vector<endpoint> endpoints_;
    detail::backend::name_lookup lookup_;
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
