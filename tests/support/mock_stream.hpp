// A scripted byte stream for the framing tests (in the spirit of Asio's
// test_stream and corosio's mocket): each read_some takes what it can from
// the next scripted chunk, or returns the next scripted error; after the
// script, eof. Reads complete at once, so no io_context is needed.
#pragma once

#include <portico/buffer.hpp>
#include <portico/error.hpp>

#include "support/framing.hpp"

#include <algorithm>
#include <coroutine>
#include <cstddef>
#include <cstring>
#include <deque>
#include <memory>
#include <span>
#include <system_error>
#include <vector>

namespace portico::test {

class mock_stream {
public:
    /// The next read returns (up to) these bytes.
    void push(std::span<const std::byte> bytes) { script_->steps.push_back({{bytes.begin(), bytes.end()}, {}}); }
    /// The next read fails with `ec`.
    void push_error(std::error_code ec) { script_->steps.push_back({{}, ec}); }
    /// read_some calls so far.
    [[nodiscard]] std::size_t reads() const noexcept { return script_->reads; }
    /// Bytes still scripted and not read.
    [[nodiscard]] std::size_t unread() const noexcept
    {
        std::size_t n = 0;
        for (const auto& s : script_->steps) n += s.data.size();
        return n;
    }

    struct read_op {
        io_result<std::size_t> result;
        bool await_ready() const noexcept { return true; }
        void await_suspend(std::coroutine_handle<>) const noexcept {}
        io_result<std::size_t> await_resume() const noexcept { return result; }
    };

    read_op read_some(std::span<mutable_buffer> buffers)
    {
        auto& s = *script_;
        ++s.reads;
        if (s.steps.empty()) return {{make_error_code(errc::eof), 0}};
        auto& front = s.steps.front();
        if (front.error) {
            const auto ec = front.error;
            s.steps.pop_front();
            return {{ec, 0}};
        }
        const std::size_t done = copy_into(buffers, front.data);
        front.data.erase(front.data.begin(), front.data.begin() + static_cast<std::ptrdiff_t>(done));
        if (front.data.empty()) s.steps.pop_front();
        return {{{}, done}};
    }

private:
    struct step {
        std::vector<std::byte> data;
        std::error_code error;
    };
    struct script {
        std::deque<step> steps;
        std::size_t reads = 0;
    };
    // Shared, so a copy handed to packet_stream and the test see one script.
    std::shared_ptr<script> script_ = std::make_shared<script>();
};

} // namespace portico::test
