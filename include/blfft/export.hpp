#pragma once
/// @file export.hpp
/// Symbol visibility: the library is built with hidden visibility; public API is marked.

#if defined(BLFFT_STATIC_DEFINE)
#define BLFFT_API
#elif defined(_WIN32)
#if defined(BLFFT_BUILDING_LIBRARY)
#define BLFFT_API __declspec(dllexport)
#else
#define BLFFT_API __declspec(dllimport)
#endif
#else
#define BLFFT_API __attribute__((visibility("default")))
#endif
