#pragma once
/// @file version.hpp

#define BLFFT_VERSION_MAJOR 0
#define BLFFT_VERSION_MINOR 1
#define BLFFT_VERSION_PATCH 0
#define BLFFT_VERSION_STRING "0.1.0"
