// Every instruction-set build of the kernels registers its ops under a namespace of its own,
// relgan_<isa>_<name> (relgan/fast/build.py passes -DRELGAN_OPS_PREFIX=relgan_<isa>), so that the builds for
// several instruction sets load into one process side by side (the parity tests compare each with the
// reference model).
#pragma once

#include <torch/library.h>

#ifndef RELGAN_OPS_PREFIX
#error "build with -DRELGAN_OPS_PREFIX=relgan_<isa> (relgan/fast/build.py does)"
#endif

#define RELGAN_PASTE(prefix, name) prefix##_##name
#define RELGAN_NAMESPACE(prefix, name) RELGAN_PASTE(prefix, name)
#define RELGAN_LIBRARY_OF(ns, m) TORCH_LIBRARY(ns, m)
#define RELGAN_LIBRARY(name, m) RELGAN_LIBRARY_OF(RELGAN_NAMESPACE(RELGAN_OPS_PREFIX, name), m)
