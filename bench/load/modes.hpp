// The load patterns (--mode), each a session.
#pragma once

#include "options.hpp"
#include "session.hpp"

#include <memory>

namespace load {

std::unique_ptr<session> make_session(const options& opts, const endpoint& server);

} // namespace load
