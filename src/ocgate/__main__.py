from ocgate._cli import main

raise SystemExit(main())
