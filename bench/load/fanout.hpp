// The fanout mode: one sender, many receivers (see fanout.cpp).
#pragma once

#include "options.hpp"
#include "session.hpp"

#include <memory>

namespace load {

std::unique_ptr<session> make_fanout_session(const options& opts, const endpoint& server);

} // namespace load
