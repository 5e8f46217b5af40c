#pragma once
/// \file config.hpp
/// Version and build-configuration macros of AKCB.

#define AKCB_VERSION_MAJOR 0
#define AKCB_VERSION_MINOR 1
#define AKCB_VERSION_PATCH 0

#if defined(__CUDACC__) || defined(__HIPCC__)
#define AKCB_HOST_DEVICE __host__ __device__
#else
#define AKCB_HOST_DEVICE
#endif

// AKCB_WITH_CUDA is defined (to 1) by the build when the CUDA kernels are compiled into the
// library; users query it at run time through akcb::ops::cuda_kernels_available().
