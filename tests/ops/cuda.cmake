# CUDA-vs-CPU reference tests of the kernels (label `cuda`); included by tests/CMakeLists.txt.
# Each case skips itself when the machine has no CUDA device.
if(AKCB_WITH_CUDA)
  akcb_add_test(NAME akcb_cuda_tests
    SOURCES ops/test_ops_cuda.cpp
    LABELS cuda)
endif()
