// The .npy reader (data/npy.h): headers numpy writes (versions 1 and 2, every supported dtype, any
// rank) are read back value for value through the memory map; damaged or unsupported files are one
// UserError naming the file and the problem.
#include "vdp/data/npy.h"

#include <gtest/gtest.h>
#include "vdp/ckpt/checkpoint.h"
#include <limits>
#include "vdp/config/config.h"
#include "vdp/task/task.h"

#include <chrono>
#include <cstdio>
#include <functional>
#include <thread>
#include <vector>
#include <filesystem>
#include <fstream>
#include <string>

#include "vdp/core/error.h"

namespace vdp {
namespace {

// An .npy file as numpy writes it: magic, version, little-endian header length, the dictionary
// padded with spaces to a multiple of 64 and a newline, then the data.
std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1) {
  std::string header = dict;
  const size_t pre = major == 1 ? 10 : 12;
  while ((pre + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  const size_t n = header.size();
  out += static_cast<char>(n & 0xff);
  out += static_cast<char>((n >> 8) & 0xff);
  if (major != 1) {
    out += static_cast<char>((n >> 16) & 0xff);
    out += static_cast<char>((n >> 24) & 0xff);
  }
  return out + header + data;
}

std::string write(const std::string& name, const std::string& bytes) {
  const auto path = (std::filesystem::temp_directory_path() / ("vdp_npy_test_" + name)).string();
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string error_of(const std::string& bytes) {
  const std::string path = write("bad.npy", bytes);
  try {
    load_npy(path);
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

TEST(Npy, ReadsWhatNumpyWritesThroughTheMap) {
  float f[6] = {0.5f, -1.25f, 3.0f, 4.5f, -0.0f, 1e-3f};
  const std::string path = write("f4.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                                                     std::string(reinterpret_cast<char*>(f), sizeof f)));
  torch::Tensor t = load_npy(path);
  EXPECT_EQ(t.scalar_type(), torch::kFloat32);
  EXPECT_EQ(t.sizes(), torch::IntArrayRef({2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(t.flatten()[i].item<float>(), f[i]);

  int64_t ids[3] = {7, -2, 1LL << 40};
  t = load_npy(write("i8v2.npy", npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
                                           std::string(reinterpret_cast<char*>(ids), sizeof ids), 2)));
  EXPECT_EQ(t.scalar_type(), torch::kInt64);
  EXPECT_EQ(t[2].item<int64_t>(), 1LL << 40);

  const std::pair<const char*, torch::ScalarType> kinds[] = {
      {"|b1", torch::kBool}, {"|u1", torch::kUInt8}, {"|i1", torch::kInt8}, {"<i2", torch::kInt16},
      {"<u2", torch::kUInt16}, {"<i4", torch::kInt32}, {"<f2", torch::kFloat16}, {"<f8", torch::kFloat64}};
  for (const auto& [descr, dtype] : kinds) {
    const size_t bytes = 4 * 5 * c10::elementSize(dtype);
    const std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (4, 5, 1), }";
    t = load_npy(write("kind.npy", npy_bytes(dict, std::string(bytes, '\1'))));
    EXPECT_EQ(t.scalar_type(), dtype) << descr;
    EXPECT_EQ(t.sizes(), torch::IntArrayRef({4, 5, 1})) << descr;
  }
}

TEST(Npy, BadFilesNameTheFileAndTheProblem) {
  const std::string ok_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::string data(8, '\0');
  EXPECT_NE(error_of("PK\3\4 not numpy at all").find("not a .npy file"), std::string::npos);
  EXPECT_NE(error_of(npy_bytes(ok_dict, data).substr(0, 40)).find("truncated"), std::string::npos);
  EXPECT_NE(error_of(npy_bytes(ok_dict, data + "xx")).find("holds 10 bytes of data"), std::string::npos);
  EXPECT_NE(error_of(npy_bytes("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", data)).find("big-endian"),
            std::string::npos);
  EXPECT_NE(error_of(npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", data)).find("Fortran order"),
            std::string::npos);
  EXPECT_NE(error_of(npy_bytes("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", data)).find("unsupported dtype"),
            std::string::npos);
  EXPECT_NE(error_of(npy_bytes("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", data)).find("unsupported dtype"),
            std::string::npos);
  EXPECT_NE(error_of(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", std::string(4, '\0'))).find("scalar"),
            std::string::npos);
  EXPECT_NE(error_of(npy_bytes("{'descr': '<f4', 'shape': (2,), }", data)).find("lacks"), std::string::npos);
  EXPECT_NE(error_of(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", data))
                .find("bad shape"), std::string::npos);
  EXPECT_NE(error_of(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999,), }", data))
                .find("absurd shape"), std::string::npos);
  EXPECT_NE(error_of(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", data)).find("expected"),
            std::string::npos);
  // Found by the fuzz target: a shape entry that is only Python 2's "L" suffix.
  EXPECT_NE(error_of(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, L), }", data)).find("bad shape"),
            std::string::npos);
  std::string v9 = npy_bytes(ok_dict, data);
  v9[6] = 9;
  EXPECT_NE(error_of(v9).find("version 9"), std::string::npos);
  EXPECT_NE(error_of("").find("not a .npy file"), std::string::npos);
}

// An array as numpy.save writes it, into folder/name.
void save(const std::string& folder, const std::string& name, const torch::Tensor& t) {
  const char* descr = t.scalar_type() == torch::kFloat32 ? "<f4" : t.scalar_type() == torch::kUInt8 ? "|u1" : "<i8";
  std::string shape = "(";
  for (int64_t d : t.sizes()) shape += std::to_string(d) + ", ";
  if (t.dim() > 1) shape.resize(shape.size() - 2);
  shape += ")";
  const torch::Tensor c = t.contiguous();
  const std::string data(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  std::filesystem::create_directories(folder);
  std::ofstream(folder + "/" + name, std::ios::binary)
      << npy_bytes("{'descr': '" + std::string(descr) + "', 'fortran_order': False, 'shape': " + shape + ", }", data);
}

std::string task_error(const std::string& folder, const std::vector<std::string>& more = {}) {
  std::vector<std::string> args = {"vdp-train", "--dataset", "npy", "--data-dir", folder};
  args.insert(args.end(), more.begin(), more.end());
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    make_task(parse_config(static_cast<int>(argv.size()), argv.data()).config);
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

// The whole data is checked before training: every problem one line naming the file and sample.
TEST(NpyWholeData, CheckedBeforeTheFirstWindow) {
  const std::string root = (std::filesystem::temp_directory_path() / "vdp_npy_whole").string();
  remove_tree(root);
  torch::manual_seed(0);
  const torch::Tensor x = torch::randn({40, 3}), y = torch::randint(0, 3, {40}, torch::kInt64);
  auto has = [](const std::string& text, const std::string& needle) {
    return text.find(needle) != std::string::npos;
  };
  {
    const std::string d = root + "/nan";
    torch::Tensor bad = x.clone();
    bad[37][1] = std::numeric_limits<float>::quiet_NaN();
    save(d, "x.npy", bad), save(d, "y.npy", y);
    const std::string e = task_error(d, {"--model", "mlp"});
    EXPECT_TRUE(has(e, "x.npy' holds NaN or Inf in sample 37")) << e;
  }
  {
    const std::string d = root + "/test_classes";
    save(d, "x.npy", x), save(d, "y.npy", y), save(d, "test_x.npy", x.slice(0, 0, 5));
    save(d, "test_y.npy", torch::tensor({0, 1, 2, 7, 0}, torch::kInt64));
    const std::string e = task_error(d, {"--model", "mlp"});
    EXPECT_TRUE(has(e, "test_y.npy' holds class 7 in sample 3")) << e;
  }
  {
    const std::string d = root + "/test_shape";
    save(d, "x.npy", x), save(d, "y.npy", y), save(d, "test_x.npy", torch::randn({5, 4})), save(d, "test_y.npy", y.slice(0, 0, 5));
    EXPECT_TRUE(has(task_error(d, {"--model", "mlp"}), "must look like the training split"));
  }
  {
    const std::string d = root + "/huge_class";
    torch::Tensor big = y.clone();
    big[5] = 1000000000;
    save(d, "x.npy", x), save(d, "y.npy", big);
    EXPECT_TRUE(has(task_error(d, {"--model", "mlp"}), "holds class id 1000000000"));
  }
  const torch::Tensor tokens = torch::randint(0, 300, {40, 16}, torch::kInt64);
  {
    const std::string d = root + "/mask";
    save(d, "x.npy", tokens.slice(1, 0, 15)), save(d, "y.npy", tokens.slice(1, 1, 16));
    save(d, "mask.npy", torch::zeros({40, 15}, torch::kUInt8));
    EXPECT_TRUE(has(task_error(d, {"--model", "gpt", "--context", "15"}), "counts no target at all"));
    torch::Tensor m = torch::ones({40, 15}, torch::kUInt8);
    m[3][4] = 2;
    save(d, "mask.npy", m);
    EXPECT_TRUE(has(task_error(d, {"--model", "gpt", "--context", "15"}), "other than 0 and 1 in sample 3"));
  }
  {
    // gpt on integer sequences: the vocabulary is the data's largest token + 1, not the sequence length.
    const std::string d = root + "/gpt";
    save(d, "x.npy", tokens.slice(1, 0, 15)), save(d, "y.npy", tokens.slice(1, 1, 16));
    std::vector<const char*> argv = {"vdp-train", "--dataset", "npy", "--data-dir", d.c_str(), "--model", "gpt",
                                     "--context", "15"};
    const Task t = make_task(parse_config(static_cast<int>(argv.size()), argv.data()).config);
    const int64_t vocab = tokens.max().item<int64_t>() + 1;
    for (const auto& p : t.model->named_parameters())
      if (p.key() == "wte.weight") EXPECT_EQ(p.value().size(0), vocab);
  }
  remove_tree(root);
}

// Data changed under a running job: a truncated or rewritten x.npy is an IoError naming the file at
// the next batch (not a SIGBUS, not silently other samples); a fault outside the guarded copy ends
// the process with the same line and exit 3.
std::string x_npy(const std::string& name, int rows, float value) {
  std::string data(static_cast<size_t>(rows) * 64 * sizeof(float), '\0');
  auto* f = reinterpret_cast<float*>(data.data());
  for (int i = 0; i < rows * 64; ++i) f[i] = value + static_cast<float>(i);
  return write(name, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows) +
                                   ", 64), }",
                               data));
}

std::string io_error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const IoError& e) {
    return e.what();
  }
  return "";
}

TEST(NpyChanged, TruncatedUnderTheMapIsAnIoErrorNamingTheFile) {
  const std::string xp = x_npy("trunc_x.npy", 4096, 0.f);  // 1 MiB: many pages
  const NpyArray x = map_npy(xp);
  std::vector<float> out(64);
  const int64_t last = 4095, first = 0;
  x.file->copy_rows(out.data(), x.offset, &last, 1, 64 * sizeof(float));
  EXPECT_EQ(out[0], 4095.f * 64);
  std::filesystem::resize_file(xp, 4096);
  // The last row now lies past the file's end: reading its page faults (SIGBUS) inside the guard.
  const std::string e = io_error_of([&] { x.file->copy_rows(out.data(), x.offset, &last, 1, 64 * sizeof(float)); });
  EXPECT_NE(e.find(xp), std::string::npos) << e;
  EXPECT_NE(e.find("changed while the job was reading it (truncated)"), std::string::npos) << e;
  // A row still inside the file: read, then the size check finds the change.
  const std::string e2 = io_error_of([&] { x.file->copy_rows(out.data(), x.offset, &first, 1, 64 * sizeof(float)); });
  EXPECT_NE(e2.find("(truncated)"), std::string::npos) << e2;
  std::remove(xp.c_str());
}

TEST(NpyChanged, RewrittenInPlaceIsAnIoErrorAtTheNextBatch) {
  const std::string xp = x_npy("rewrite_x.npy", 16, 0.f);
  const NpyArray x = map_npy(xp), y = map_npy(x_npy("rewrite_y.npy", 16, 0.f));
  NpyDataset d(x, y, NpyArray{}, torch::kFloat32);
  EXPECT_EQ(d.get({3}).x[0][0].item<float>(), 3.f * 64);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // past the file system's time granularity
  x_npy("rewrite_x.npy", 16, 1000.f);                           // same size, other values, same inode
  const std::string e = io_error_of([&] { d.get({3}); });
  EXPECT_NE(e.find(xp + "' changed while the job was reading it (rewritten)"), std::string::npos) << e;
  std::remove(xp.c_str());
}

TEST(NpyChangedDeathTest, AFaultOutsideTheGuardEndsWithTheLineAndExit3) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::string xp = x_npy("fault_x.npy", 4096, 0.f);
  EXPECT_EXIT(
      {
        const torch::Tensor x = load_npy(xp);
        std::filesystem::resize_file(xp, 4096);
        std::printf("%f\n", x[4095][0].item<float>());  // an ATen read of a page past the end
      },
      ::testing::ExitedWithCode(3), "I/O error: '" + xp + "' changed while the job was reading it \\(truncated\\)");
  std::remove(xp.c_str());
}

}  // namespace
}  // namespace vdp
