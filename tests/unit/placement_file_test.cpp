// Placement files (docs/formats.md): what moe-place writes reads back as the same table, and each
// kind of bad file is refused with one line naming the file and the entry.
#include "moe/placement_file.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "moe/placement_random.hpp"
#include "support/process.hpp"

namespace moe {
namespace {

ModelConfig tiny_model() {
  ModelConfig c;
  c.num_layers = 3;
  c.layer_num_experts = {0, 4, 6};
  c.expert_ffn = 40;
  return c;
}

class PlacementFile : public testing::Test {
 protected:
  // A valid file for world 4 with replicas, then `edit` applied; returns the read error.
  std::string error_after(const std::function<void(nlohmann::json&)>& edit, int world = 4) {
    const std::string path = dir_.file("placement.json");
    write_placement_file(path, random_placement(config_, 4, 7), config_, {"random", 7, 2});
    nlohmann::json doc = nlohmann::json::parse(std::ifstream(path));
    edit(doc);
    std::ofstream(path) << doc.dump();
    try {
      read_placement_file(path, config_, world);
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
      return what.substr(path.size());  // every message starts with the file name
    }
    return "no error";
  }
  // Holders of `expert` in the file's entry for MoE layer `layer`.
  static nlohmann::json& holders(nlohmann::json& doc, int64_t layer, int64_t expert) {
    for (auto& l : doc["layers"])
      if (l["layer"] == layer)
        for (auto& e : l["experts"])
          if (e["expert"] == expert) return e["holders"];
    throw std::runtime_error("no such entry");
  }

  test::ScratchDir dir_{"placement-file"};
  ModelConfig config_ = tiny_model();
};

TEST_F(PlacementFile, RoundTrip) {
  for (const int world : {1, 3, 4, 8, 12}) {
    const std::string path = dir_.file(fmt::format("p{}.json", world));
    const ExpertPlacement p = random_placement(config_, world, 99);
    write_placement_file(path, p, config_, {"random", 99, 0});
    const ExpertPlacement q = read_placement_file(path, config_, world);
    for (int64_t l = 0; l < config_.num_layers; ++l)
      for (int r = 0; r < world; ++r) {
        const auto& a = p.local_experts(l, r);
        const auto& b = q.local_experts(l, r);
        ASSERT_EQ(a.size(), b.size());
        for (std::size_t i = 0; i < a.size(); ++i) {
          EXPECT_EQ(a[i].expert, b[i].expert);
          EXPECT_EQ(a[i].ffn_begin, b[i].ffn_begin);
          EXPECT_EQ(a[i].ffn_end, b[i].ffn_end);
        }
      }
  }
}

TEST_F(PlacementFile, ExpertMissing) {
  EXPECT_EQ(error_after([](nlohmann::json& d) {
              auto& experts = d["layers"][1]["experts"];
              experts.erase(experts.begin() + 2);
            }),
            ": layer 2 expert 2: no rank holds it");
}

TEST_F(PlacementFile, RankOutOfRange) {
  EXPECT_EQ(error_after([](nlohmann::json& d) { holders(d, 2, 3)[0]["rank"] = 4; }),
            ": layer 2 expert 3 holder 0: rank 4 is out of range [0, 4)");
}

// Numbers that are not exact integers of the field's type are refused, not truncated or wrapped.
TEST_F(PlacementFile, RankNotAnExactInt) {
  EXPECT_EQ(error_after([](nlohmann::json& d) { holders(d, 2, 3)[0]["rank"] = 4294967297ULL; }),
            ": layer 2 expert 3 holder 0: 'rank' must be an integer in [-2147483648, 2147483647], got 4294967297");
  EXPECT_EQ(error_after([](nlohmann::json& d) { holders(d, 2, 3)[0]["rank"] = 1.5; }),
            ": layer 2 expert 3 holder 0: 'rank' must be an integer in [-2147483648, 2147483647], got 1.5");
  EXPECT_EQ(error_after([](nlohmann::json& d) { holders(d, 1, 0)[0]["rank"] = "0"; }),
            ": layer 1 expert 0 holder 0: 'rank' must be an integer in [-2147483648, 2147483647], got \"0\"");
}

TEST_F(PlacementFile, FfnNotTwoIntegers) {
  EXPECT_EQ(error_after([](nlohmann::json& d) { holders(d, 2, 1)[0]["ffn"] = {0, 1e30}; }),
            ": layer 2 expert 1 holder 0: 'ffn' must be [begin, end] (integers), got [0,1e+30]");
  EXPECT_EQ(error_after([](nlohmann::json& d) { holders(d, 2, 1)[0]["ffn"] = {0, 40, 80}; }),
            ": layer 2 expert 1 holder 0: 'ffn' must be [begin, end] (integers), got [0,40,80]");
  EXPECT_EQ(error_after([](nlohmann::json& d) { holders(d, 2, 1)[0]["ffn"] = 40; }),
            ": layer 2 expert 1 holder 0: 'ffn' must be [begin, end] (integers), got 40");
}

TEST_F(PlacementFile, LayerBeyondInt64) {
  EXPECT_EQ(error_after([](nlohmann::json& d) { d["layers"][0]["layer"] = 18446744073709551615ULL; }),
            ": layers[]: 'layer' must be an integer in [-9223372036854775808, 9223372036854775807], got "
            "18446744073709551615");
}

TEST_F(PlacementFile, WorldMismatch) {
  EXPECT_EQ(error_after([](nlohmann::json&) {}, 8), ": made for world 4, this run has 8 ranks");
}

TEST_F(PlacementFile, SliceGap) {
  EXPECT_EQ(error_after([](nlohmann::json& d) {
              holders(d, 1, 0) = nlohmann::json::array({{{"rank", 0}, {"role", "slice"}, {"ffn", {0, 10}}},
                                                        {{"rank", 1}, {"role", "slice"}, {"ffn", {12, 40}}}});
            }),
            ": layer 1 expert 0 holder 1: slice [12, 40) leaves a gap at FFN columns [10, 12)");
}

TEST_F(PlacementFile, SlicesShort) {
  EXPECT_EQ(error_after([](nlohmann::json& d) {
              holders(d, 1, 0) = nlohmann::json::array({{{"rank", 0}, {"role", "slice"}, {"ffn", {0, 10}}},
                                                        {{"rank", 1}, {"role", "slice"}, {"ffn", {10, 39}}}});
            }),
            ": layer 1 expert 0: slices cover FFN columns [0, 39), not [0, 40)");
}

TEST_F(PlacementFile, ReplicaNotWhole) {
  EXPECT_EQ(error_after([](nlohmann::json& d) {
              holders(d, 2, 1) = nlohmann::json::array({{{"rank", 3}, {"role", "replica"}, {"ffn", {0, 20}}}});
            }),
            ": layer 2 expert 1 holder 0: a replica holds FFN columns [0, 20), not the whole expert [0, 40)");
}

TEST_F(PlacementFile, WrongVersion) {
  EXPECT_EQ(error_after([](nlohmann::json& d) { d["version"] = 2; }),
            ": placement version 2 is not supported (this build reads version 1)");
}

TEST_F(PlacementFile, OtherModel) {
  config_.expert_ffn = 40;
  EXPECT_EQ(error_after([](nlohmann::json& d) { d["model"]["expert_ffn"] = 48; }),
            ": made for the model shape {\"expert_ffn\":48,\"layer_num_experts\":[0,4,6],\"num_layers\":3}, this "
            "model is {\"expert_ffn\":40,\"layer_num_experts\":[0,4,6],\"num_layers\":3}");
}

TEST_F(PlacementFile, NotJson) {
  const std::string path = dir_.file("bad.json");
  std::ofstream(path) << "{ not json";
  try {
    read_placement_file(path, config_, 4);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path + ": not a JSON placement file", 0), 0u) << e.what();
  }
}

}  // namespace
}  // namespace moe
