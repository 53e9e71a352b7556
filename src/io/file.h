// Whole-file reads with errors that name the path, and atomic writes: a temp file beside the target,
// fsync, rename, fsync of the folder; a crash never leaves a half-written file under the final name.
#pragma once

#include <string>
#include <string_view>

namespace hs::io {

std::string read_file(const std::string& path);
void write_file_atomic(const std::string& path, std::string_view bytes);
bool exists(const std::string& path);
bool is_directory(const std::string& path);
// Creates the folder and its parents; throws hs::Error naming the path when it cannot.
void make_dirs(const std::string& path);
// Removes a file or a folder with everything in it (symbolic links are removed, never followed); a path
// that does not exist is fine. Returns "" on success, else what failed. POSIX nftw, not
// std::filesystem::remove_all: with LibTorch loaded, that call crashed (null function pointer) in builds on
// Ubuntu 24.04's GCC 13, as soon as the folder held files.
std::string remove_tree(const std::string& path);

}  // namespace hs::io
