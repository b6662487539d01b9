"""craft ``load_recipes``: vanilla Minecraft recipe and tag JSON (written here in the real format) read
into the tech tree's format, merged over the default tree, used by ``CraftEnv``, and malformed files
reported by file and key."""

import json

import pytest

from agentsd.envs import make
from agentsd.envs.craft import DEFAULT, CraftEnv, Recipe, RecipeFormatError, load_recipes
from agentsd.envs.craft.planner import next_command

#: A handful of vanilla files, as Minecraft 1.20 / 1.21 ship them.
RECIPES = {
    "oak_planks.json": {
        "type": "minecraft:crafting_shapeless", "category": "building", "group": "planks",
        "ingredients": [{"tag": "minecraft:oak_logs"}], "result": {"count": 4, "id": "minecraft:oak_planks"},
    },
    "spruce_planks.json": {
        "type": "minecraft:crafting_shapeless", "group": "planks",
        "ingredients": [{"tag": "minecraft:spruce_logs"}], "result": {"item": "minecraft:spruce_planks", "count": 4},
    },
    "stick.json": {
        "type": "minecraft:crafting_shaped", "category": "misc", "group": "sticks",
        "key": {"#": {"tag": "minecraft:planks"}}, "pattern": ["#", "#"],
        "result": {"count": 4, "item": "minecraft:stick"},
    },
    "crafting_table.json": {
        "type": "minecraft:crafting_shaped", "key": {"#": {"tag": "minecraft:planks"}}, "pattern": ["##", "##"],
        "result": {"item": "minecraft:crafting_table"},
    },
    "wooden_pickaxe.json": {
        "type": "minecraft:crafting_shaped", "category": "equipment",
        "key": {"#": {"item": "minecraft:stick"}, "X": {"tag": "minecraft:planks"}},
        "pattern": ["XXX", " # ", " # "], "result": {"id": "minecraft:wooden_pickaxe", "count": 1},
    },
    "torch.json": {
        "type": "minecraft:crafting_shaped",
        "key": {"#": "minecraft:stick", "X": [{"item": "minecraft:coal"}, {"item": "minecraft:charcoal"}]},
        "pattern": ["X", "#"], "result": {"count": 4, "item": "minecraft:torch"},
    },
    "furnace.json": {
        "type": "minecraft:crafting_shaped", "key": {"#": "#minecraft:stone_crafting_materials"},
        "pattern": ["###", "# #", "###"], "result": {"id": "minecraft:furnace"},
    },
    "iron_ingot_from_smelting_raw_iron.json": {
        "type": "minecraft:smelting", "category": "misc", "cookingtime": 200, "experience": 0.7,
        "group": "iron_ingot", "ingredient": {"item": "minecraft:raw_iron"}, "result": "minecraft:iron_ingot",
    },
    "iron_ingot_from_iron_block.json": {
        "type": "minecraft:crafting_shapeless", "group": "iron_ingot",
        "ingredients": ["minecraft:iron_block"], "result": {"count": 9, "id": "minecraft:iron_ingot"},
    },
    "lantern.json": {
        "type": "minecraft:crafting_shaped", "key": {"#": {"item": "minecraft:torch"}, "X": {"item": "minecraft:iron_nugget"}},
        "pattern": ["XXX", "X#X", "XXX"], "result": {"item": "minecraft:lantern"},
    },
    "iron_nugget.json": {
        "type": "minecraft:crafting_shapeless", "ingredients": [{"item": "minecraft:iron_ingot"}],
        "result": {"item": "minecraft:iron_nugget", "count": 9},
    },
    "iron_ingot_from_blasting_raw_iron.json": {
        "type": "minecraft:blasting", "cookingtime": 100, "ingredient": {"item": "minecraft:raw_iron"},
        "result": {"id": "minecraft:iron_ingot"},
    },
    "armor_dye.json": {"type": "minecraft:crafting_special_armordye", "category": "misc"},
}
TAGS = {
    "planks.json": {"values": ["minecraft:oak_planks", "minecraft:spruce_planks"]},
    "oak_logs.json": {"values": ["minecraft:oak_log", "minecraft:oak_wood", "minecraft:stripped_oak_log"]},
    "spruce_logs.json": {"values": ["minecraft:spruce_log", "minecraft:spruce_wood"]},
    "logs_that_burn.json": {"values": ["#minecraft:oak_logs", "#minecraft:spruce_logs"]},
    "logs.json": {"values": ["#minecraft:logs_that_burn", {"id": "#minecraft:crimson_stems", "required": False}]},
    "stone_crafting_materials.json": {"values": ["minecraft:cobblestone", "minecraft:blackstone",
                                                 "minecraft:cobbled_deepslate"]},
}


def write_pack(root, recipes=RECIPES, tags=TAGS, tag_dir="tags/item"):
    (root / "recipe").mkdir(parents=True, exist_ok=True)
    (root / tag_dir).mkdir(parents=True, exist_ok=True)
    for name, d in recipes.items():
        (root / "recipe" / name).write_text(json.dumps(d, indent=2))
    for name, d in tags.items():
        (root / tag_dir / name).write_text(json.dumps(d))
    return root


def test_vanilla_recipes_in_the_tree_format(tmp_path):
    rs = load_recipes(write_pack(tmp_path / "minecraft"))
    r = rs.recipes
    # planks from logs via a tag; oak_log / oak_planks are the default tree's log / planks (DEFAULT_ALIASES)
    assert r["planks"] == Recipe("planks", 4, {"log": 1}, False, "shapeless")
    assert r["stick"] == Recipe("stick", 4, {"planks": 2}, False, "shaped")  # "#planks" is the tree's planks
    assert r["crafting_table"] == Recipe("crafting_table", 1, {"planks": 4}, False, "shaped")
    assert r["wooden_pickaxe"] == Recipe("wooden_pickaxe", 1, {"planks": 3, "stick": 2}, True, "shaped")
    assert r["torch"].inputs == {"coal": 1, "stick": 1}  # a list of alternatives: the first the tree has
    assert r["furnace"].inputs == {"cobblestone": 8} and r["furnace"].needs_table  # a tag's first member
    assert rs.smelting == {"iron_ore": "iron_ingot"} and rs.cooking_time == {"iron_ore": 200}  # raw_iron
    assert r["iron_nugget"].inputs == {"iron_ingot": 1} and r["lantern"].inputs == {"iron_nugget": 8, "torch": 1}
    assert rs.skipped == {"blasting": 1, "crafting_special_armordye": 1}
    assert rs.tags["logs"] == ["log", "oak_wood", "stripped_oak_log", "spruce_log", "spruce_wood"]  # nested
    assert "spruce_planks.json" in next(k for k in rs.dropped if "spruce_planks" in k)
    assert "spruce_log" in rs.dropped[next(k for k in rs.dropped if k.endswith("spruce_planks.json"))]
    # iron_ingot <- iron_block would be a cycle (iron_block needs iron_ingot): smelting is kept
    why = rs.dropped[next(k for k in rs.dropped if k.endswith("iron_ingot_from_iron_block.json"))]
    assert "obtained another way" in why
    assert "recipes" in rs.summary()


def test_merged_tree_is_valid_and_playable(tmp_path):
    tree = load_recipes(write_pack(tmp_path / "pack")).tree
    assert set(DEFAULT.items) < set(tree.items) and {"lantern", "iron_nugget"} <= set(tree.items)
    assert "iron_ingot" not in tree.recipes and tree.smelted_from["iron_ingot"] == "iron_ore"
    assert tree.recipes["bucket"] == DEFAULT.recipes["bucket"]  # base recipes not covered stay
    chain = tree.prerequisites("lantern")
    assert chain[-1] == "lantern" and chain.index("iron_nugget") < chain.index("lantern")
    assert chain.index("iron_ingot") < chain.index("iron_nugget")
    # the env and its planner use the merged tree
    for env in (CraftEnv(techtree=tree, task="lantern"), make("craft", recipes=str(tmp_path / "pack"), task="lantern")):
        env.reset(seed=3)
        info = {}
        for _ in range(400):
            cmd = env.oracle_action()
            if cmd is None:
                break
            _, _, term, trunc, info = env.step(cmd)
            if term or trunc:
                break
        assert info.get("success"), env.message
    assert next_command is not None


def test_older_layout_tags_items_and_plain_result_strings(tmp_path):
    rec = {"glass.json": {"type": "minecraft:smelting", "ingredient": {"tag": "minecraft:smelts_to_glass"},
                          "result": "minecraft:glass", "cookingtime": 200},
           "sticks_from_logs.json": {"type": "crafting_shapeless", "ingredients": [{"tag": "minecraft:logs"}] * 2,
                                     "result": {"item": "minecraft:stick", "count": 16}}}
    tags = {"smelts_to_glass.json": {"values": ["minecraft:sand", "minecraft:red_sand"]},
            "logs.json": {"values": ["minecraft:oak_log"]}}
    rs = load_recipes(write_pack(tmp_path, rec, tags, tag_dir="tags/items"))
    assert rs.smelting == {"sand": "glass"}
    assert rs.recipes["stick"] == Recipe("stick", 16, {"log": 2}, False, "shapeless")  # "#logs" -> log


@pytest.mark.parametrize(
    "name,text,match",
    [
        ("broken.json", '{"type": "minecraft:crafting_shaped", "pattern": ["#"', r"broken.json: not valid JSON"),
        ("nokey.json", json.dumps({"type": "minecraft:crafting_shaped", "pattern": ["#X"], "key": {"#": {"item": "stick"}},
                                   "result": {"item": "minecraft:ladder"}}),
         r"nokey.json: key 'key': pattern character 'X' is not in 'key'"),
        ("noresult.json", json.dumps({"type": "minecraft:crafting_shapeless", "ingredients": ["minecraft:log"]}),
         r"noresult.json: key 'result'"),
        ("badcount.json", json.dumps({"type": "minecraft:crafting_shapeless", "ingredients": ["minecraft:log"],
                                      "result": {"item": "minecraft:planks", "count": 0}}),
         r"badcount.json: key 'result.count'"),
        ("badingredient.json", json.dumps({"type": "minecraft:crafting_shapeless", "ingredients": [{"count": 2}],
                                           "result": "minecraft:planks"}),
         r"badingredient.json: key 'ingredients\[0\]'"),
        ("notype.json", json.dumps({"pattern": ["#"]}), r"notype.json: key 'type'"),
        ("nosmelt.json", json.dumps({"type": "minecraft:smelting", "result": "minecraft:glass"}),
         r"nosmelt.json: key 'ingredient'"),
        ("unknowntag.json", json.dumps({"type": "minecraft:crafting_shapeless", "ingredients": [{"tag": "minecraft:gems"}],
                                        "result": "minecraft:planks"}),
         r"unknowntag.json: unknown tag '#gems'"),
    ],
)
def test_malformed_files_name_the_file_and_key(tmp_path, name, text, match):
    write_pack(tmp_path, {"stick.json": RECIPES["stick.json"]}, TAGS)
    (tmp_path / "recipe" / name).write_text(text)
    with pytest.raises(RecipeFormatError, match=match):
        load_recipes(tmp_path)


def test_bad_tags_and_directories(tmp_path):
    write_pack(tmp_path, {"stick.json": RECIPES["stick.json"]}, {**TAGS, "planks.json": {"values": "oak_planks"}})
    with pytest.raises(RecipeFormatError, match=r"planks.json: key 'values'"):
        load_recipes(tmp_path)
    write_pack(tmp_path, {}, {**TAGS, "planks.json": {"values": ["#minecraft:wood"]},
                              "wood.json": {"values": ["#minecraft:planks"]}})
    with pytest.raises(RecipeFormatError, match="tag cycle"):
        load_recipes(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_recipes(tmp_path / "missing")
    empty = tmp_path / "empty"
    (empty / "recipe").mkdir(parents=True)
    (empty / "recipe" / "x.json").write_text(json.dumps({"type": "minecraft:stonecutting"}))
    with pytest.raises(FileNotFoundError, match="no crafting_shaped"):
        load_recipes(empty)
