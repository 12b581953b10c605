// portico: the class a CRTP base hands its hooks to, when the class below it
// may itself be derived from.
#pragma once

#include <portico/config.hpp>

#include <type_traits>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// `Self` when nothing derives from it (`Derived` is void), else `Derived`.
/// A socket operation that a composed one extends (read_all() over a
/// receive) passes the composed type down, so socket_op calls its hooks.
template <class Self, class Derived>
using most_derived = std::conditional_t<std::is_void_v<Derived>, Self, Derived>;

} // namespace detail

PORTICO_NAMESPACE_END
