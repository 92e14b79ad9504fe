from delbench.cli import main

raise SystemExit(main())
