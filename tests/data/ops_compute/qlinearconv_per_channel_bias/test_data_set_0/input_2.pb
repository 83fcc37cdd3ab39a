BxzJ
