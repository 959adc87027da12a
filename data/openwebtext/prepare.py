"""Prepare OpenWebText: the checkout's shortcut for `python -m nanogpt.data.prepare openwebtext`
(the command lives in the package, so an installed one has it too: `nanogpt-prepare openwebtext`)."""

from nanogpt.data.prepare.commands import checkout_shortcut

main = checkout_shortcut("openwebtext")

if __name__ == "__main__":
    main()
