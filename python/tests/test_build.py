"""permafrost.build_dict() and permafrost.build_list(): frozen values from an iterable."""
import os
import tempfile
import unittest

import permafrost


def records(n):
    for i in range(n):
        yield f"k{i}", {"id": i, "tags": ["a", "b"], "score": i / 2}


class Build(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "built.pf")

    def tearDown(self):
        self.dir.cleanup()

    def test_build_dict_from_a_generator(self):
        built = permafrost.build_dict(records(1000))
        self.assertIsInstance(built, permafrost.FrozenDict)
        self.assertEqual(built, dict(records(1000)))
        self.assertEqual(built["k999"]["tags"], ["a", "b"])

    def test_build_dict_of_mapping_items(self):
        source = {"a": 1, "b": [2, 3]}
        self.assertEqual(permafrost.build_dict(source.items()), source)

    def test_a_repeated_key_keeps_its_last_value(self):
        built = permafrost.build_dict([("a", 1), ("b", 2), ("a", 3)])
        self.assertEqual(built, {"a": 3, "b": 2})
        self.assertEqual(list(built), ["a", "b"])  # first position, last value, as dict(items)

    def test_build_list_from_a_generator(self):
        built = permafrost.build_list(i * i for i in range(1000))
        self.assertIsInstance(built, permafrost.FrozenList)
        self.assertEqual(built, [i * i for i in range(1000)])

    def test_empty_iterables(self):
        self.assertEqual(permafrost.build_dict(iter(())), {})
        self.assertEqual(permafrost.build_list(iter(())), [])

    def test_path_saves_an_image(self):
        built = permafrost.build_dict(records(100), path=self.path, name="built-table")
        self.assertEqual(permafrost.open(self.path), built)
        permafrost.build_list(iter([1, "two", [3]]), path=self.path)
        self.assertEqual(permafrost.open(self.path), [1, "two", [3]])

    def test_a_pair_of_another_length_is_a_value_error(self):
        with self.assertRaises(ValueError):
            permafrost.build_dict([("a", 1), ("b", 2, 3)])
        with self.assertRaises(TypeError):
            permafrost.build_dict([("a", 1), 5])

    def assert_nothing_saved(self, build, exception):
        with self.assertRaises(exception):
            build(self.path)
        self.assertFalse(os.path.exists(self.path))
        # An image already at the path is left as it was.
        permafrost.freeze({"old": 1}).save(self.path)
        with self.assertRaises(exception):
            build(self.path)
        self.assertEqual(permafrost.open(self.path), {"old": 1})
        self.assertEqual(os.listdir(self.dir.name), ["built.pf"])  # no temporary file left
        os.unlink(self.path)

    def test_a_bad_value_midway_saves_nothing(self):
        def items():
            yield from records(500)
            yield "bad", object()
            yield from records(10)

        self.assert_nothing_saved(lambda p: permafrost.build_dict(items(), path=p), TypeError)
        self.assert_nothing_saved(lambda p: permafrost.build_list((v for _, v in items()), path=p),
                                  TypeError)

    def test_an_exception_from_the_iterable_saves_nothing(self):
        class Broken(Exception):
            pass

        def items():
            yield from records(500)
            raise Broken

        self.assert_nothing_saved(lambda p: permafrost.build_dict(items(), path=p), Broken)

    def test_keyboard_interrupt_saves_nothing(self):
        def values():
            yield from range(500)
            raise KeyboardInterrupt

        self.assert_nothing_saved(lambda p: permafrost.build_list(values(), path=p),
                                  KeyboardInterrupt)


if __name__ == "__main__":
    unittest.main()
