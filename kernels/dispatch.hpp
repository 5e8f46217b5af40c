#pragma once
// Private: dtype dispatch for the CUDA launchers (STYLE.md "Policy and dtype dispatch").
//   AKCB_DISPATCH_FLOAT_TYPES(dtype, "name", [&] { ... scalar_t ... })   Half, BFloat16, Float
//   akcb::cuda::detail::cuda_type_t<scalar_t>                            __half, __nv_bfloat16, float
//   akcb::cuda::detail::dispatch_quant(scalar_type, "name", f)           f(kernels::Fp8E4M3{} | kernels::Int8{})

#include <ATen/Dispatch.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <akcb/error.hpp>

#include "common.cuh"

#define AKCB_DISPATCH_FLOAT_TYPES(TYPE, NAME, ...)                   \
  AT_DISPATCH_SWITCH(TYPE, NAME,                                     \
                     AT_DISPATCH_CASE(at::ScalarType::Half, __VA_ARGS__)     \
                     AT_DISPATCH_CASE(at::ScalarType::BFloat16, __VA_ARGS__) \
                     AT_DISPATCH_CASE(at::ScalarType::Float, __VA_ARGS__))

namespace akcb::cuda::detail {

template <typename T> struct CudaType { using type = T; };
template <> struct CudaType<at::Half> { using type = __half; };
template <> struct CudaType<at::BFloat16> { using type = __nv_bfloat16; };
template <typename T> using cuda_type_t = typename CudaType<T>::type;

/// Calls f(kernels::Fp8E4M3{}) or f(kernels::Int8{}) for a quantized storage dtype.
template <typename F>
decltype(auto) dispatch_quant(c10::ScalarType t, char const* name, F&& f) {
  switch (t) {
    case at::kFloat8_e4m3fn: return f(kernels::Fp8E4M3{});
    case at::kChar: return f(kernels::Int8{});
    default: AKCB_CHECK(false, name, ": quantized dtype must be float8_e4m3fn or int8, got ", t);
  }
  return f(kernels::Fp8E4M3{});  // unreachable
}

}  // namespace akcb::cuda::detail
