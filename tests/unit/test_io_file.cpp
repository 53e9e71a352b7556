// io::remove_tree against the file system itself: a nested folder goes whole, a symbolic link inside it is
// removed without touching what it points to, a missing path is fine, a plain file goes.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "io/file.h"
#include "support/test_support.h"

namespace {

bool present(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0;
}

void touch(const std::string& p, const std::string& text = "x") { std::ofstream(p) << text; }

TEST(IoFile, RemoveTreeRemovesNestedFoldersButNotLinkTargets) {
  const std::string root = hs::test::temp_dir("remove-tree");
  const std::string keep = root + "/outside", tree = root + "/ckpt";
  hs::io::make_dirs(keep);
  touch(keep + "/precious");
  hs::io::make_dirs(tree + "/a/b/c");
  touch(tree + "/train_state.safetensors", std::string(1 << 20, 'z'));
  touch(tree + "/a/b/c/deep");
  ASSERT_EQ(::symlink(keep.c_str(), (tree + "/a/link").c_str()), 0);
  EXPECT_EQ(hs::io::remove_tree(tree), "");
  EXPECT_FALSE(present(tree));
  EXPECT_TRUE(present(keep + "/precious"));  // the link was removed, not followed
  EXPECT_EQ(hs::io::remove_tree(tree), "");  // already gone: fine
  touch(root + "/file");
  EXPECT_EQ(hs::io::remove_tree(root + "/file"), "");
  EXPECT_FALSE(present(root + "/file"));
  EXPECT_EQ(hs::io::remove_tree(root), "");
  EXPECT_FALSE(present(root));
}

}  // namespace
