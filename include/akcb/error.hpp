#pragma once
/// \file error.hpp
/// Error convention (STYLE.md, after PyTorch/ATen):
///  - AKCB_CHECK: a caller's mistake. Throws c10::Error (what LibTorch callers already catch)
///    with a message that names the offending values. Active in every build type.
///  - AKCB_ASSERT: one of our own invariants. Throws c10::Error via TORCH_INTERNAL_ASSERT.
/// Library code never aborts or exits.

#include <c10/util/Exception.h>

#define AKCB_CHECK(cond, ...) TORCH_CHECK((cond), "akcb: ", __VA_ARGS__)
#define AKCB_CHECK_VALUE(cond, ...) TORCH_CHECK_VALUE((cond), "akcb: ", __VA_ARGS__)
#define AKCB_CHECK_INDEX(cond, ...) TORCH_CHECK_INDEX((cond), "akcb: ", __VA_ARGS__)
#define AKCB_ASSERT(cond, ...) TORCH_INTERNAL_ASSERT((cond), "akcb internal: ", ##__VA_ARGS__)
