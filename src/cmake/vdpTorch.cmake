# Finds LibTorch for vdp, with or without a CUDA toolkit. Used by vdp's CMakeLists.txt and by the
# vdpConfig.cmake of a build tree or an install, so a user's project finds LibTorch the same way.
#
# The pinned PyPI wheel (torch 2.11.0, CUDA 13) ships a CMake config that enables CUDA as soon as it
# is loaded: it stops with "Failed to detect a default CUDA architecture" where nvcc is not on PATH
# and with "cannot find the CUDA libraries" where no toolkit is installed. The wheel's CPU libraries
# (libc10, libtorch_cpu) are complete without a toolkit, so:
#   - a CUDA toolkit is found (on PATH or not: CMake's FindCUDAToolkit also looks in /usr/local/cuda,
#     CUDAToolkit_ROOT, CUDA_PATH) and VDP_WITH_CUDA is not OFF: find_package(Torch), told where nvcc is;
#   - otherwise, a CUDA wheel: import its CPU libraries here, without its CMake config;
#   - a CPU wheel or a CPU LibTorch: find_package(Torch), which needs no toolkit.
#
# In:  Torch_DIR or CMAKE_PREFIX_PATH (where TorchConfig.cmake is); VDP_WITH_CUDA (optional).
# Out: TORCH_LIBRARIES, VDP_TORCH_PREFIX_DIR (the LibTorch root), VDP_TORCH_CPU_IMPORT (ON where
#      imported here), VDP_TORCH_HAS_CUDA (the LibTorch has CUDA libraries and they are usable).

find_file(VDP_TORCH_CONFIG TorchConfig.cmake
          HINTS ${Torch_DIR} $ENV{Torch_DIR}
          PATH_SUFFIXES Torch share/cmake/Torch lib/cmake/Torch)
if(NOT VDP_TORCH_CONFIG)
  message(FATAL_ERROR "vdp: LibTorch not found (no TorchConfig.cmake). Run launch/setup.sh, or pass "
                      "-DTorch_DIR=<libtorch>/share/cmake/Torch")
endif()
get_filename_component(_vdp_torch_cfg_dir "${VDP_TORCH_CONFIG}" DIRECTORY)
get_filename_component(VDP_TORCH_PREFIX_DIR "${_vdp_torch_cfg_dir}/../../.." ABSOLUTE)
set(_vdp_torch_is_cuda OFF)
if(EXISTS "${VDP_TORCH_PREFIX_DIR}/lib/libtorch_cuda.so")
  set(_vdp_torch_is_cuda ON)
endif()

set(VDP_TORCH_CPU_IMPORT OFF)
set(VDP_TORCH_HAS_CUDA OFF)
if(_vdp_torch_is_cuda)
  set(_vdp_cuda_wanted ON)
  if(DEFINED VDP_WITH_CUDA AND NOT VDP_WITH_CUDA)
    set(_vdp_cuda_wanted OFF)
  endif()
  if(_vdp_cuda_wanted)
    find_package(CUDAToolkit QUIET)
  endif()
  if(_vdp_cuda_wanted AND CUDAToolkit_FOUND AND CUDAToolkit_NVCC_EXECUTABLE)
    # LibTorch's config enables the CUDA language: hand it the nvcc that was found, on PATH or not.
    if(NOT CMAKE_CUDA_COMPILER)
      set(CMAKE_CUDA_COMPILER "${CUDAToolkit_NVCC_EXECUTABLE}" CACHE FILEPATH "nvcc" FORCE)
    endif()
    if(NOT CUDAToolkit_ROOT)
      get_filename_component(CUDAToolkit_ROOT "${CUDAToolkit_BIN_DIR}/.." ABSOLUTE)
    endif()
    if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
      # vdp compiles no CUDA kernels; this only quiets LibTorch's GPU probing.
      set(ENV{TORCH_CUDA_ARCH_LIST} "9.0")
    endif()
    find_package(Torch REQUIRED PATHS "${_vdp_torch_cfg_dir}" NO_DEFAULT_PATH)
    set(VDP_TORCH_HAS_CUDA ON)
  else()
    set(VDP_TORCH_CPU_IMPORT ON)
  endif()
else()
  find_package(Torch REQUIRED PATHS "${_vdp_torch_cfg_dir}" NO_DEFAULT_PATH)
endif()

if(VDP_TORCH_CPU_IMPORT)
  # The CPU half of the CUDA wheel, imported as torch's own config would (same include directories
  # and compile definitions; libtorch_cpu finds the wheel's CUDA runtime pieces through its RUNPATH).
  if(NOT TARGET vdp_torch)
    foreach(_lib c10 torch_cpu)
      set(_path "${VDP_TORCH_PREFIX_DIR}/lib/lib${_lib}.so")
      if(NOT EXISTS "${_path}")
        message(FATAL_ERROR "vdp: ${_path} is missing; the LibTorch in ${VDP_TORCH_PREFIX_DIR} is incomplete "
                            "(delete the set-up's virtual environment and rerun launch/setup.sh)")
      endif()
      add_library(vdp_torch_${_lib} SHARED IMPORTED)
      set_target_properties(vdp_torch_${_lib} PROPERTIES IMPORTED_LOCATION "${_path}")
    endforeach()
    add_library(vdp_torch INTERFACE IMPORTED)
    set_target_properties(vdp_torch PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES
        "${VDP_TORCH_PREFIX_DIR}/include;${VDP_TORCH_PREFIX_DIR}/include/torch/csrc/api/include"
      INTERFACE_COMPILE_DEFINITIONS "USE_DISTRIBUTED;USE_C10D_GLOO;USE_RPC;USE_TENSORPIPE"
      INTERFACE_LINK_LIBRARIES "vdp_torch_torch_cpu;vdp_torch_c10"
      INTERFACE_COMPILE_FEATURES cxx_std_17)
  endif()
  set(TORCH_LIBRARIES vdp_torch)
  set(PACKAGE_FIND_VERSION 0)
  include("${_vdp_torch_cfg_dir}/TorchConfigVersion.cmake")
  set(Torch_VERSION "${PACKAGE_VERSION}")
  message(STATUS "vdp: LibTorch ${Torch_VERSION} CPU libraries imported from ${VDP_TORCH_PREFIX_DIR} "
                 "(no CUDA toolkit used: the CPU build)")
else()
  message(STATUS "vdp: LibTorch ${Torch_VERSION} from ${Torch_DIR}")
endif()
