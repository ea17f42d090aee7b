"""What a user writes: recipes and suite files, parsed into pure, validated data (no torch)."""
