#pragma once
/// \file policy_traits.hpp
/// The static interface every cache policy satisfies (checked by AdaptiveCache<P>).

#include <type_traits>

#include <akcb/policy/budget.hpp>

namespace akcb::detail {

template <class P, class = void>
struct is_cache_policy : std::false_type {};

template <class P>
struct is_cache_policy<
    P, std::void_t<typename P::Config, decltype(P::kKind), decltype(P::kCompresses), decltype(P::kUsesScores),
                   decltype(P::kUsesOqRatio),
                   decltype(P::budget(std::declval<CacheConfig const&>(), 1.0, policy::TokenBytes{}))>>
    : std::is_same<decltype(P::budget(std::declval<CacheConfig const&>(), 1.0, policy::TokenBytes{})),
                   policy::LayerBudget> {};

template <class P>
inline constexpr bool is_cache_policy_v = is_cache_policy<P>::value;

}  // namespace akcb::detail
