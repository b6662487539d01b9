"""Craft: a Minecraft-style crafting and mining world (seeded grid, biomes, a tech tree as data,
tool tiers, a furnace, tasks by tier, an oracle planner)."""
