"""One module per `nlb-suite` subcommand: NAME, HELP, add_arguments(parser), run(args) -> int."""
