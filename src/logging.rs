//! Log set-up shared by all subcommands.
