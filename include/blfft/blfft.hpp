#pragma once
/// @file blfft.hpp
/// Umbrella header: band-limited FFT convolution (Dziedzic et al., ICML 2019).

#include "blfft/energy.hpp"
#include "blfft/error.hpp"
#include "blfft/geometry.hpp"
#include "blfft/plan.hpp"
#include "blfft/tensor.hpp"
#include "blfft/version.hpp"
