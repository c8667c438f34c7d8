from aria_stream.cli import main

raise SystemExit(main())
