from streamguard.cli import main

raise SystemExit(main())
