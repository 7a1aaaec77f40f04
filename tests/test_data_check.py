"""The data copy measured (lab2.core.data_check), on JPEG and PNG files the tests write, in a folder and a .tar.gz."""

import pytest

from conftest import write_image_folder, write_tar_gz
from lab2.core import data_check


@pytest.fixture(scope="module")
def jpeg_dir(arrays, tmp_path_factory):
    """The test images as JPEG files written by Pillow at its default quality (75), as the course copy was."""
    return write_image_folder(arrays, tmp_path_factory.mktemp("jpegs"), suffix=".jpg")


def test_a_copy_written_by_pillow_at_its_quality_is_recognised_in_a_folder_and_an_archive(jpeg_dir, tmp_path):
    archive = write_tar_gz(jpeg_dir, tmp_path / "cifar10-jpeg.tar.gz", top="cifar10-jpeg")
    for source in (str(jpeg_dir), f"image-folder:{jpeg_dir}", f"image-folder:{archive}"):
        assert data_check.encoded_like_pillow(source) is True
        # Another quality has other quantization tables: the re-encodings would not degrade the data as it was made.
        assert data_check.encoded_like_pillow(source, quality=90) is False


def test_data_without_jpeg_files_cannot_be_checked(image_dir, tmp_path):
    assert data_check.encoded_like_pillow(f"image-folder:{image_dir}") is None  # PNG files only
    assert data_check.encoded_like_pillow(str(tmp_path / "not-here.tar.gz")) is None


def test_one_jpeg_round_trip_changes_lossless_photographs_by_a_few_grey_levels_more_at_lower_quality():
    found = data_check.jpeg_error_on_lossless()
    assert found["images"] == 70 and found["photos"] == 5 and found["quality"] == 75
    assert 2 < found["rmse"] < data_check.jpeg_error_on_lossless(quality=30)["rmse"] < 40
