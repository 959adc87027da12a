"""Prepare the embedded Shakespeare corpus: the checkout's shortcut for `python -m nanogpt.data.prepare shakespeare`
(the command lives in the package, so an installed one has it too: `nanogpt-prepare shakespeare`)."""

from nanogpt.data.prepare.commands import checkout_shortcut

main = checkout_shortcut("shakespeare")

if __name__ == "__main__":
    main()
