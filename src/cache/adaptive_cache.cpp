// Explicit instantiations of AdaptiveCache for the five policies (users' translation units see
// the extern declarations and do not re-instantiate them).
#include <akcb/cache/adaptive_cache.hpp>

namespace akcb {
template class AdaptiveCache<policy::Full>;
template class AdaptiveCache<policy::Window>;
template class AdaptiveCache<policy::Origin>;
template class AdaptiveCache<policy::Quant>;
template class AdaptiveCache<policy::Mix>;
}  // namespace akcb
