from serialhs.cli.main import main

raise SystemExit(main())
