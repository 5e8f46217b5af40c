#pragma once
/// \file akcb.hpp
/// Umbrella header of the core library (akcb::akcb). Model code lives in <akcb/models/...>.

#include <akcb/config.hpp>
#include <akcb/error.hpp>
#include <akcb/shapes.hpp>
#include <akcb/ops.hpp>
#include <akcb/calculator.hpp>
#include <akcb/cache/cache_config.hpp>
#include <akcb/cache/cache_stats.hpp>
#include <akcb/cache/layer_cache.hpp>
#include <akcb/cache/adaptive_cache.hpp>
#include <akcb/cache/any_cache.hpp>
