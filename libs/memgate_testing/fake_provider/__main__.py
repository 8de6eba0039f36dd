from memgate_testing.fake_provider._cli import main

main()
