collect_ignore_glob = ["*"]  # fixtures, not tests: some notebooks never finish
